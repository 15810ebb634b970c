"""`RequestFactory` reads the table a block of rows at a time: the requests must be the ones that
one numpy `item` per value gives, whatever the block size and the order rows are asked for."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.core.request import Request
from servesim.workload import RequestTable
from servesim.workload.factory import RequestFactory


def made_by_item(factory: RequestFactory, i: int) -> Request:
    """The factory's request as made before blocks: numpy `item` (or indexing) per value."""
    t = factory.table
    r = Request(i, t.arrival_s.item(i), t.prompt_tokens.item(i), t.output_tokens.item(i),
                ttft_slo=factory.ttft_slo.item(i), tpot_slo=factory.tpot_slo.item(i))
    if t.prefix_hashes is not None:
        r.prefix_hashes = t.prefix_hashes[i]
    if t.class_name is not None:
        r.class_name = str(t.class_name[i])
    if t.session_id is not None:
        r.session_id = int(t.session_id[i])
    if t.priority is not None:
        r.priority = int(t.priority[i])
    return r


def state(r: Request) -> list[tuple[str, type, str]]:
    """Every field with its type and repr (NaN equal to NaN; 1 and 1.0 told apart)."""
    return [(f.name, type(v), repr(v)) for f in dataclasses.fields(r) for v in [getattr(r, f.name)]]


def table(n: int, optional: bool, seed: int) -> RequestTable:
    rng = np.random.default_rng(seed)
    slo = np.where(rng.random(n) < 0.5, np.nan, rng.random(n))
    extra = dict(
        session_id=rng.integers(-1, 5, n), class_name=rng.choice(["a", "b"], n).astype(object),
        priority=rng.integers(0, 3, n), ttft_slo=slo, tpot_slo=slo / 10,
        prefix_hashes=[tuple(rng.integers(0, 99, rng.integers(0, 3)).tolist()) for _ in range(n)],
    ) if optional else {}
    return RequestTable(np.cumsum(rng.random(n)), rng.integers(1, 900, n), rng.integers(1, 90, n), **extra)


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(1, 50), block_rows=st.integers(1, 20), optional=st.booleans(), seed=st.integers(0, 99),
    shuffled=st.booleans(), global_slo=st.sampled_from([(2.0, 0.1), (5, 1)]), data=st.data(),
)
def test_block_reads_make_the_requests_item_reads_make(n, block_rows, optional, seed, shuffled,
                                                        global_slo, data):
    factory = RequestFactory(table(n, optional, seed), *global_slo, block_rows=block_rows)
    order = data.draw(st.permutations(range(n))) if shuffled else range(n)
    for i in order:
        assert state(factory.make(i)) == state(made_by_item(factory, i)), i


def test_a_row_past_the_end_is_refused():
    factory = RequestFactory(table(3, False, 0), 2.0, 0.1, block_rows=2)
    factory.make(2)
    with pytest.raises(IndexError):
        factory.make(3)
