"""KVCacheManager: block accounting, refusal without side effects, cohort reservation."""

from servesim.core.cohort import DecodeCohort
from servesim.kv.manager import KVCacheManager
from tests.helpers import make_request


def test_allocate_rounds_up_to_blocks_and_free_returns_them():
    kv = KVCacheManager(10, 16)
    r = make_request(0, 33, 5)
    assert kv.allocate(r, 33)
    assert r.num_blocks == 3 and kv.num_free_blocks == 7
    r.advance(33, 1.0)
    assert kv.allocate(r, 1)  # token 34 still fits in block 3
    assert r.num_blocks == 3
    kv.free(r)
    assert kv.num_free_blocks == 10 and r.num_blocks == 0


def test_refused_allocation_changes_nothing():
    kv = KVCacheManager(4, 16)
    a, b = make_request(0, 48, 5), make_request(1, 40, 5)
    assert kv.allocate(a, 48)
    before = (kv.num_free_blocks, b.num_blocks, kv.peak_used_blocks)
    assert not kv.allocate(b, 40)
    assert (kv.num_free_blocks, b.num_blocks, kv.peak_used_blocks) == before


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
    cohort = DecodeCohort(4)
    r = make_request(0, 4, 100)
    assert kv.allocate(r, 4)
    r.advance(4, 0.0)  # 4 computed: the next token needs a second block
    cohort.join(r)
    assert kv.max_cohort_steps(cohort, 100) == 9 * 4  # nine free blocks, four tokens each
    assert kv.reserve_cohort(cohort, 5)  # tokens 5..9 -> blocks 2 and 3
    assert kv.num_free_blocks == 7
    assert not kv.reserve_cohort(cohort, 100)
    assert kv.num_free_blocks == 7
