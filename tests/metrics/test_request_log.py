"""RequestLog: a record is packed by `struct` as its request is written and moves into the array
with its block; the array must hold exactly what numpy's conversion of record tuples
(`np.array(tuples, dtype=RECORD)`, the log's former way) gave, byte for byte."""

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.core.request import Request, RequestStatus
from servesim.metrics import request_log
from servesim.metrics.request_log import CODES, PACK, RECORD, RequestLog


def _int(dtype) -> st.SearchStrategy:
    info = np.iinfo(dtype)
    return st.integers(int(info.min), int(info.max))


times_st = st.floats(allow_nan=True, allow_infinity=True)
outcome_st = st.fixed_dictionaries({
    "instance": _int(np.int32), "first_token_time": times_st, "finish_time": times_st,
    "num_preemptions": _int(np.int32), "status": st.sampled_from(RequestStatus),
    "rejected_reason": st.sampled_from(["", "too long", "no capacity", "failed: ø"]),
    "num_cached_tokens": _int(np.int32), "_generated": _int(np.int32), "prefill_instance": _int(np.int32),
    "handoff_time": times_st, "first_scheduled_time": times_st, "num_retries": _int(np.int32),
    "num_migrations": _int(np.int32), "_max_token_gap": times_st,
})


def as_tuple(r: Request, reason: int) -> tuple:
    """A request's record as the log used to write it (a tuple in `RECORD`'s field order)."""
    return (r.request_id, r.instance, r.first_token_time, r.finish_time, r.num_preemptions, r.status,
            reason, r.num_cached_tokens, r.num_generated_tokens, r.prefill_instance, r.handoff_time,
            r.first_scheduled_time, r.num_retries, r.num_migrations, r.max_token_gap)


def test_struct_codes_have_the_fields_sizes():
    assert CODES == ["q", "i", "d", "d", "i", "b", "h", "i", "i", "i", "d", "d", "i", "i", "d"]
    for i, code in enumerate(CODES):
        assert np.dtype(f"={code}") == RECORD[i]


def _field(dtype) -> st.SearchStrategy:
    return times_st if dtype == np.float64 else _int(dtype)


record_st = st.tuples(*[_field(RECORD[i]) for i in range(len(RECORD))])


@settings(max_examples=300, deadline=None)
@given(st.lists(record_st, max_size=12))
def test_packed_records_are_the_bytes_numpy_makes_of_tuples(records):
    """Any values in each field's range, NaN, infinities and -0.0 included."""
    packed = b"".join(PACK(*record) for record in records)
    assert packed == np.array(records, dtype=RECORD).tobytes()


@settings(max_examples=150, deadline=None)
@given(st.data(), st.lists(outcome_st, max_size=20), st.sampled_from([1, 2, 3, 5, 4096]))
def test_written_requests_give_the_records_numpy_made_of_tuples(data, outcomes, block):
    """Requests ended in any order, across block boundaries: the pending fields hold what has not
    moved, and the array is the tuples converted by numpy, the records not written untouched."""
    n = len(outcomes) + data.draw(st.integers(0, 3))
    ids = data.draw(st.permutations(range(n)))[: len(outcomes)]
    saved, request_log.BLOCK = request_log.BLOCK, block
    try:
        log, expected = RequestLog(n), RequestLog(n).records
        reasons: dict[str, int] = {"": 0}
        tuples = []
        for i, outcome in zip(ids, outcomes):
            r = Request(i, 0.0, 10, 5)
            for name, value in outcome.items():  # (progress fields: set as the engine sets them)
                setattr(r, name, value)
            log.write(r)
            tuples.append(as_tuple(r, reasons.setdefault(r.rejected_reason, len(reasons))))
            assert len(log._pending) == len(tuples) % block
        assert log.reasons == reasons
        log._flush()
        assert not len(log._pending)
        if tuples:
            expected[list(ids)] = np.array(tuples, dtype=RECORD)
        assert log.records.tobytes() == expected.tobytes()
    finally:
        request_log.BLOCK = saved


def test_values_of_other_number_types_pack_as_numpy_converts_them():
    """What numpy took in a tuple packs the same: an IntEnum, bools, ints in float fields, numpy
    scalars."""
    records = [
        (0, -(2**31), 0, 1, True, RequestStatus.FAILED, 2**15 - 1, 2**31 - 1, False, -1, math.inf, -0.0,
         3, 4, 1),
        (2**63 - 1, np.int32(7), np.float32(0.75), np.float64(0.5), np.int64(9), np.int8(-128), -(2**15),
         np.uint8(255), np.int16(-7), np.int64(-1), math.nan, np.float16(1.5), 0, -(2**31), np.int32(2)),
    ]
    packed = b"".join(PACK(*record) for record in records)
    assert packed == np.array(records, dtype=RECORD).tobytes()
