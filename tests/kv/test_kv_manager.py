"""KVCacheManager: block accounting, refusal without side effects, cohort reservation, and the
conservation check itself."""

import numpy as np
import pytest

from servesim.kv.manager import KVCacheManager, KVConservationError
from tests.factories import make_request


def test_allocate_rounds_up_to_blocks_and_free_returns_them():
    kv = KVCacheManager(10, 16)
    r = make_request(0, 33, 5)
    assert kv.allocate(r, 33)
    assert kv.blocks_of(r) == 3 and kv.num_free_blocks == 7
    r.advance(33, 1.0)
    assert kv.allocate(r, 1)  # token 34 still fits in block 3
    assert kv.blocks_of(r) == 3
    kv.free(r)
    assert kv.num_free_blocks == 10 and kv.blocks_of(r) == 0


def test_refused_allocation_changes_nothing():
    kv = KVCacheManager(4, 16)
    a, b = make_request(0, 48, 5), make_request(1, 40, 5)
    assert kv.allocate(a, 48)
    before = (kv.num_free_blocks, kv.blocks_of(b), kv.peak_used_blocks)
    assert not kv.allocate(b, 40)
    assert (kv.num_free_blocks, kv.blocks_of(b), kv.peak_used_blocks) == before


def test_watermark_keeps_headroom_for_running_requests():
    kv = KVCacheManager(100, 16, watermark=0.05)
    r = make_request(0, 16 * 96, 5)
    assert not kv.allocate(r, 16 * 96, keep_watermark=True)
    assert kv.allocate(r, 16 * 95, keep_watermark=True)


def test_fits_ever_counts_prompt_and_output():
    kv = KVCacheManager(4, 16)
    assert kv.fits_ever(make_request(0, 60, 5))  # 64 tokens held at most
    assert not kv.fits_ever(make_request(1, 60, 6))


def test_cohort_reservation_counts_block_boundaries():
    kv = KVCacheManager(10, 4)
    r = make_request(0, 4, 100)
    assert kv.allocate(r, 4)
    r.advance(4, 0.0)  # 4 computed: the next token needs a second block
    kv.join_cohort(r)
    assert kv.max_cohort_steps(100) == 9 * 4  # nine free blocks, four tokens each
    assert kv.reserve_cohort(5)  # tokens 5..9 -> blocks 2 and 3
    assert kv.num_free_blocks == 7 and kv.cohort_reserved_steps == 5
    assert not kv.reserve_cohort(100)
    assert kv.num_free_blocks == 7
    kv.check_conservation()
    kv.advance_cohort(np.arange(1.0, 4.0))  # three of the five reserved steps run
    assert kv.cohort_reserved_steps == 2
    kv.check_conservation()


def test_leaving_a_reserved_cohort_gives_the_reservation_back_and_holds_the_rest():
    kv = KVCacheManager(10, 4)
    a, b = make_request(0, 4, 100), make_request(1, 8, 100)
    for r in (a, b):
        assert kv.allocate(r, r.num_prompt_tokens)
        r.advance(r.num_prompt_tokens, 0.0)
        kv.join_cohort(r)
    assert kv.reserve_cohort(1)  # both need a new block for token 5 / 9
    assert kv.num_free_blocks == 10 - 3 - 2
    kv.leave_cohort(b)  # b keeps its 2 blocks; only a's next block stays reserved
    assert kv.blocks_of(b) == 2 and kv.cohort_reserved_steps == 1
    assert kv.num_free_blocks == 10 - 3 - 1
    kv.check_conservation()


def test_a_recomputing_request_joins_one_token_short_and_gives_back_the_last_block():
    """Preempted by recomputation after 3 tokens, a request is admitted again with blocks for all
    its known tokens, computes all but the last generated one and joins the cohort to decode it:
    the block held for that token goes back to the pool, which the cohort's step reserves again
    (it was lost once: found by tests/schedulers/test_sched_invariants.py)."""
    kv = KVCacheManager(20, 1)
    r = make_request(0, 4, 10)
    assert kv.allocate(r, 4)
    r.advance(4, 0.0)
    kv.join_cohort(r)
    assert kv.reserve_cohort(2)
    kv.advance_cohort([1.0, 2.0])  # 3 tokens generated, 6 computed
    kv.leave_cohort(r)
    kv.free(r)
    r.reset_for_recompute()
    assert r.num_pending_tokens == 7 and kv.allocate(r, 7)  # every known token
    r.advance(6, 3.0)  # the last generated token is left to decode
    assert r.num_pending_tokens == 1 and kv.num_free_blocks == 13
    kv.join_cohort(r)
    assert kv.blocks_of(r) == 6 and kv.num_free_blocks == 14
    kv.check_conservation()
    assert kv.reserve_cohort(1) and kv.num_free_blocks == 13
    kv.check_conservation()


def test_conservation_check_catches_a_lost_block():
    kv = KVCacheManager(10, 4)
    r = make_request(0, 8, 4)
    assert kv.allocate(r, 8)
    kv.check_conservation()
    kv.num_free_blocks += 1  # a block appears from nowhere
    with pytest.raises(KVConservationError):
        kv.check_conservation()


def test_debug_mode_checks_conservation_after_every_step(monkeypatch):
    import servesim
    from tests.factories import small_config

    calls = []
    original = KVCacheManager.check_conservation
    monkeypatch.setattr(
        KVCacheManager, "check_conservation", lambda self: calls.append(1) or original(self)
    )
    result = servesim.simulate(small_config(**{"engine.check_kv_conservation": True}))
    assert len(calls) == len(result.steps) > 0
    calls.clear()
    servesim.simulate(small_config())
    assert not calls  # off by default
