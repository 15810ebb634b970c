"""Invariants of the workload layer, on random inputs (hypothesis)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.config.workload import LengthDist, SessionsConfig, ThinkTime
from servesim.core.errors import InputFileError
from servesim.core.rng import stream
from servesim.workload.readers import ReadOptions, read_trace
from servesim.workload.sessions import expand_sessions
from servesim.workload.synthetic import lengths

CELL = st.one_of(
    st.integers(1, 5000).map(str),  # good
    st.sampled_from(["", "x", "-3", "2.5", "nan"]),  # bad: missing, non-numeric, negative, fractional
)


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.tuples(CELL, CELL), min_size=1, max_size=30))
def test_bad_rows_fail_on_the_first_or_are_all_counted(tmp_path_factory, rows):
    """Malformed row i (file line i + 2) is reported first, or, when skipping, every bad row is counted
    once and the good rows survive in order."""
    path = tmp_path_factory.mktemp("t") / "l.csv"
    path.write_text("num_prefill_tokens,num_decode_tokens\n" + "".join(f"{a},{b}\n" for a, b in rows))
    good = [all(c.isdigit() for c in r) for r in rows]
    bad = [not g for g in good]  # "," too: a line of bare commas is a row with missing fields
    if any(bad):
        try:
            read_trace(path, "lengths")
            raise AssertionError("a malformed row was accepted")
        except InputFileError as exc:
            assert exc.line == bad.index(True) + 2
    if not any(good):
        return
    data = read_trace(path, "lengths", ReadOptions(skip_bad_rows=True))
    assert sum(data.report.skipped.values()) == sum(bad)
    kept = [int(a) for (a, _), g in zip(rows, good) if g]
    assert data.table.prompt_tokens.tolist() == kept


@settings(max_examples=40, deadline=None)
@given(
    num_sessions=st.integers(1, 12),
    max_turns=st.integers(1, 6),
    system=st.integers(0, 100),
    block=st.sampled_from([1, 7, 16, 64]),
    seed=st.integers(0, 2**16),
)
def test_session_turns_extend_their_history(num_sessions, max_turns, system, block, seed):
    cfg = SessionsConfig(
        turns=LengthDist(dist="uniform", min=1, max=max_turns),
        think_time=ThinkTime(dist="exponential", mean=5.0),
        system_prompt_tokens=system,
        hash_block_size=block,
    )

    def sample(n, rng):
        return lengths(LengthDist(dist="uniform", min=1, max=300), n, rng), lengths(
            LengthDist(dist="uniform", min=1, max=50), n, rng
        )

    starts = np.sort(stream(seed, "s").uniform(0, 100, num_sessions))
    t = expand_sessions(starts, cfg, sample, stream(seed, "workload"))
    assert set(t.session_id.tolist()) == set(range(num_sessions))
    for s in range(num_sessions):
        idx = np.flatnonzero(t.session_id == s)
        assert t.arrival_s[idx[0]] == starts[s]
        for a, b in zip(idx, idx[1:]):
            assert t.arrival_s[b] >= t.arrival_s[a]
            assert t.prompt_tokens[b] > t.prompt_tokens[a] + t.output_tokens[a]
            full = t.prompt_tokens[a] // block
            assert t.prefix_hashes[b][:full] == t.prefix_hashes[a][:full]
    for i in range(len(t)):
        assert len(t.prefix_hashes[i]) == -(-t.prompt_tokens[i] // block)
        assert t.prompt_tokens[i] > system
    # blocks of different sessions differ unless inside the shared system prompt
    owners = {}
    for i in range(len(t)):
        for k, h in enumerate(t.prefix_hashes[i]):
            if (k + 1) * block > system:
                assert owners.setdefault(h, t.session_id[i]) == t.session_id[i]
