"""Workload configs end to end: replay options, rate rescaling, empirical lengths, classes,
sessions, determinism, and config errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

import servesim
from servesim.build import build
from servesim.config import load_config
from servesim.core.errors import ConfigError, InputFileError
from servesim.core.rng import stream
from servesim.simulation import dump_config
from servesim.workload import build_requests, read_trace
from servesim.workload.stats import interarrival_cv
from tests.factories import small_config

ROOT = Path(__file__).resolve().parents[2]
AZURE_CONV = "traces/azure2023/AzureLLMInferenceTrace_conv.csv"
SHAREGPT = "traces/sharegpt/sharegpt_8k_filtered_stats_llama2_tokenizer.csv"


def workload(seed=0, **workload_keys):
    """The request table of a config whose workload block is `workload_keys` (paths from the repo root)."""
    cfg = load_config({"seed": seed, "workload": workload_keys})
    cfg._base_dir = ROOT
    return build_requests(cfg.workload, stream(cfg.seed, "workload"), cfg.resolve_path)


# -- trace replay ---------------------------------------------------------------------------------


def test_replay_window_and_caps():
    full = read_trace(ROOT / AZURE_CONV).table
    t = workload(trace={"path": AZURE_CONV, "start_s": 600, "duration_s": 60})
    expected = full.take((full.arrival_s >= 600) & (full.arrival_s < 660))
    np.testing.assert_allclose(t.arrival_s, expected.arrival_s - 600)
    np.testing.assert_array_equal(t.prompt_tokens, expected.prompt_tokens)
    assert len(workload(trace={"path": AZURE_CONV, "max_requests": 50})) == 50
    assert len(workload(num_requests=40, trace={"path": AZURE_CONV})) == 40
    assert workload(duration_s=30, trace={"path": AZURE_CONV}).arrival_s.max() < 30


def test_time_scale_speeds_up_and_rate_target_keeps_the_bursts():
    base = workload(trace={"path": AZURE_CONV, "duration_s": 900})
    fast = workload(trace={"path": AZURE_CONV, "duration_s": 900, "time_scale": 0.5})
    np.testing.assert_allclose(fast.arrival_s, base.arrival_s * 0.5)
    target = workload(trace={"path": AZURE_CONV, "duration_s": 900, "rate": 20.0})
    assert (len(target) - 1e-9) / (target.arrival_s[-1] - target.arrival_s[0]) == pytest.approx(20.0)
    assert interarrival_cv(target.arrival_s) == pytest.approx(interarrival_cv(base.arrival_s))
    aliased = workload(rate=20.0, trace={"path": AZURE_CONV, "duration_s": 900})
    np.testing.assert_allclose(aliased.arrival_s, target.arrival_s)


def test_window_without_requests_names_the_key():
    with pytest.raises(ConfigError, match="workload.trace.start_s: no request"):
        workload(trace={"path": AZURE_CONV, "start_s": 1e6})


def test_length_file_as_trace_gives_its_rows_in_order_with_generated_arrivals():
    t = workload(num_requests=100, arrival={"rate": 5.0}, trace={"path": SHAREGPT})
    rows = read_trace(ROOT / SHAREGPT).table
    np.testing.assert_array_equal(t.prompt_tokens, rows.prompt_tokens[:100])
    assert t.timed and len(t) == 100
    with pytest.raises(ConfigError, match="workload.trace.start_s: the trace has no timestamps"):
        workload(trace={"path": SHAREGPT, "start_s": 10})


def test_empirical_lengths_are_joint_pairs_from_the_file():
    t = workload(num_requests=3000, lengths={"empirical": SHAREGPT})
    rows = read_trace(ROOT / SHAREGPT).table
    pairs = set(zip(rows.prompt_tokens.tolist(), rows.output_tokens.tolist()))
    assert set(zip(t.prompt_tokens.tolist(), t.output_tokens.tolist())) <= pairs
    assert t.prompt_tokens.mean() == pytest.approx(rows.prompt_tokens.mean(), rel=0.05)


def test_missing_files_name_the_path():
    with pytest.raises(InputFileError, match="nowhere.csv: no such file"):
        workload(trace={"path": "traces/nowhere.csv"})
    with pytest.raises(InputFileError, match="gone.csv: no such file"):
        workload(lengths={"empirical": "gone.csv"})


def test_workload_rate_alias_sets_the_arrival_rate():
    a = workload(rate=25.0, num_requests=500)
    b = workload(arrival={"rate": 25.0}, num_requests=500)
    np.testing.assert_array_equal(a.arrival_s, b.arrival_s)


# -- classes --------------------------------------------------------------------------------------

CHAT = {"name": "chat", "priority": 2, "slo": {"ttft_s": 0.3}, "arrival": {"rate": 4.0}}
BATCH = {"name": "batch", "arrival": {"process": "gamma", "rate": 2.0, "cv": 3.0}, "slo": {"tpot_s": 0.5}}


def test_classes_carry_name_priority_and_slo_onto_requests():
    cfg = load_config(small_config(**{"workload.num_requests": 200, "workload.classes": [CHAT, BATCH]}))
    built = build(cfg)
    by_class = {}
    for r in built.requests:
        by_class.setdefault(r.class_name, []).append(r)
    assert set(by_class) == {"chat", "batch"}
    assert {(r.priority, r.ttft_slo, r.tpot_slo) for r in by_class["chat"]} == {(2, 0.3, cfg.slo.tpot_s)}
    assert {(r.priority, r.ttft_slo, r.tpot_slo) for r in by_class["batch"]} == {(0, cfg.slo.ttft_s, 0.5)}
    assert len(by_class["chat"]) / len(built.requests) == pytest.approx(4 / 6, abs=0.1)
    assert [r.arrival_time for r in built.requests] == sorted(r.arrival_time for r in built.requests)


def test_adding_a_class_leaves_the_others_unchanged():
    alone = workload(duration_s=120, classes=[CHAT])
    both = workload(duration_s=120, classes=[BATCH, CHAT])
    chat = both.take(both.class_name == "chat")
    np.testing.assert_array_equal(chat.arrival_s, alone.arrival_s)
    np.testing.assert_array_equal(chat.prompt_tokens, alone.prompt_tokens)


def test_workload_rate_scales_all_classes_in_proportion():
    t = workload(rate=12.0, duration_s=500, classes=[CHAT, BATCH])
    assert len(t) / 500 == pytest.approx(12.0, rel=0.1)
    assert (t.class_name == "chat").mean() == pytest.approx(4 / 6, abs=0.05)


def test_trace_class_beside_a_synthetic_class():
    t = workload(
        duration_s=60,
        classes=[
            {"name": "azure", "trace": {"path": AZURE_CONV}},
            {"name": "synthetic", "arrival": {"rate": 2}},
        ],
    )
    assert set(t.class_name) == {"azure", "synthetic"}
    full = read_trace(ROOT / AZURE_CONV).table
    assert (t.class_name == "azure").sum() == (full.arrival_s < 60).sum()


def test_per_class_slo_decides_attainment():
    cfg = small_config(
        **{
            "workload.num_requests": 80,
            "workload.classes": [
                {"name": "strict", "slo": {"ttft_s": 1e-6}, "arrival": {"rate": 10.0}},
                {"name": "loose", "slo": {"ttft_s": 100.0, "tpot_s": 100.0}, "arrival": {"rate": 10.0}},
            ],
        }
    )
    result = servesim.simulate(cfg)
    frame = result.requests
    loose = (frame["class"] == "loose").mean()
    assert result.summary["slo"]["attainment"] == pytest.approx(loose)
    assert set(frame.loc[frame["class"] == "strict", "ttft_slo_s"]) == {1e-6}


# -- sessions -------------------------------------------------------------------------------------

SESSIONS = {
    "turns": {"dist": "fixed", "value": 4},
    "think_time": {"dist": "fixed", "mean": 10.0},
    "system_prompt_tokens": 64,
    "hash_block_size": 16,
}


def test_session_turns_grow_the_prompt_and_share_prefix_blocks():
    t = workload(
        num_requests=40,
        arrival={"rate": 0.5},
        lengths={
            "prompt": {"dist": "uniform", "min": 20, "max": 90},
            "output": {"dist": "uniform", "min": 5, "max": 50},
        },
        sessions=SESSIONS,
    )
    assert t.hash_block_size == 16
    order = np.lexsort((t.arrival_s, t.session_id))
    for s in np.unique(t.session_id):
        idx = [i for i in order if t.session_id[i] == s]
        for a, b in zip(idx, idx[1:]):
            assert t.arrival_s[b] == pytest.approx(t.arrival_s[a] + 10.0)  # open loop: from the arrival
            assert t.prompt_tokens[b] > t.prompt_tokens[a] + t.output_tokens[a]
            full = t.prompt_tokens[a] // 16
            assert t.prefix_hashes[b][:full] == t.prefix_hashes[a][:full]
        for i in idx:
            assert len(t.prefix_hashes[i]) == -(-t.prompt_tokens[i] // 16)
            assert t.prefix_hashes[i][:4] == (0, 1, 2, 3)  # the shared system prompt's 64 tokens
    firsts = [t.prefix_hashes[i][4] for i in range(len(t)) if t.prompt_tokens[i] >= 80]
    assert len(set(firsts)) == len(set(t.session_id[t.prompt_tokens >= 80].tolist()))


def test_session_stops_before_exceeding_the_context():
    t = workload(
        num_requests=200,
        lengths={"prompt": {"dist": "fixed", "value": 300}, "output": {"dist": "fixed", "value": 100}},
        sessions={**SESSIONS, "system_prompt_tokens": 0, "max_context_tokens": 1000},
    )
    assert (t.prompt_tokens + t.output_tokens).max() <= 1000
    assert set(t.prompt_tokens.tolist()) == {300, 700}  # the third turn (1100 + 100) never comes


def test_sessions_feed_prefix_reuse_in_trace_info_terms():
    from servesim.workload.stats import prefix_block_reuse

    t = workload(num_requests=300, sessions=SESSIONS)
    later_turns = np.array([h[:4] == (0, 1, 2, 3) for h in t.prefix_hashes]).all()
    assert later_turns and 0.1 < prefix_block_reuse(t.prefix_hashes) < 1


# -- determinism and config ------------------------------------------------------------------------


def test_same_seed_same_requests_whatever_the_scheduler_or_cluster():
    base = small_config(**{"workload.classes": [CHAT, BATCH], "workload.sessions": SESSIONS})
    a = build(load_config(base)).table.to_frame()
    other = load_config(base, {"cluster.instances": 3, "engine.max_num_seqs": 4})
    b = build(other).table.to_frame()
    assert a.equals(b)
    c = build(load_config(base, {"seed": 8})).table.to_frame()
    assert not a.equals(c)


@pytest.mark.parametrize(
    "keys, match",
    [
        (
            {"lengths": {"empirical": SHAREGPT, "prompt": {"dist": "fixed", "value": 5}}},
            "either `empirical` or `prompt`",
        ),
        ({"trace": {"path": AZURE_CONV, "rate": 3, "time_scale": 2}}, "either `rate` or `time_scale`"),
        ({"trace": {"path": AZURE_CONV}, "classes": [CHAT]}, "give each class its own `trace`"),
        ({"trace": {"path": AZURE_CONV}, "sessions": {}}, "apply to generated arrivals"),
        ({"classes": [CHAT, CHAT]}, "repeated: chat"),
        ({"rate": 0}, "workload.rate: Input should be greater than 0"),
    ],
)
def test_config_errors_name_the_key(keys, match):
    with pytest.raises(ConfigError, match=match) as err:
        load_config({"workload": keys})
    assert str(err.value).startswith("workload")


def test_unknown_trace_format_names_the_class_key():
    with pytest.raises(ConfigError, match=r"workload.classes.0.trace.format: unknown trace format 'x'"):
        workload(classes=[{"name": "a", "trace": {"path": AZURE_CONV, "format": "x"}}])


def test_resolved_config_with_workload_blocks_loads_again(tmp_path):
    data = {
        "workload": {
            "lengths": {"empirical": SHAREGPT},
            "classes": [CHAT, {"name": "t", "trace": {"path": AZURE_CONV, "rate": 3.0}}],
            "duration_s": 10,
        }
    }
    cfg = load_config(data)
    dumped = yaml.safe_load(dump_config(cfg))
    again = load_config({"workload": dumped["workload"]})
    assert again.workload == cfg.workload


def test_example_configs_validate():
    for name in ("azure_conv", "mooncake_conv", "sharegpt_poisson", "multiclass_sessions", "servegen_mlarge"):
        cfg = load_config(ROOT / "configs" / f"{name}.yaml")
        assert len(build_requests(cfg.workload, stream(cfg.seed, "workload"), cfg.resolve_path)) > 100


@pytest.mark.parametrize("sessions, expected", [
    # 20,000 turns a session, each repeating its history: ~1e11 prompt blocks (terabytes of block ids)
    ({"turns": {"dist": "fixed", "value": 20_000}}, "KV blocks in all"),
    # 60 million requests: more than one run holds
    ({"turns": {"dist": "fixed", "value": 1_000_000}}, "requests one run holds"),
])
def test_sessions_too_long_for_a_run_are_config_errors(sessions, expected):
    """Turns default to at most 1,000,000 a session: without these bounds a run ran out of memory
    (exit 3) instead of naming the key."""
    with pytest.raises(ConfigError, match=expected) as err:
        workload(num_requests=60 if "requests" in expected else 10,
                 lengths={"prompt": {"dist": "fixed", "value": 1000},
                          "output": {"dist": "fixed", "value": 10}},
                 sessions={**sessions, "think_time": {"dist": "fixed", "mean": 1.0}})
    assert err.value.key == "workload.sessions.turns"
