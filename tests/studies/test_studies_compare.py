"""servesim compare: direction-aware regression gate; paired A/B comparison over seeds."""

import json
import math

import numpy as np
import pytest
from scipy import stats

from servesim.cli import main
from servesim.studies.compare import compare_summaries, judge
from servesim.studies.paired import paired_compare
from tests.factories import write_config


@pytest.mark.parametrize(
    "metric, base, new, verdict",
    [
        ("slo.attainment", 0.9, 0.95, "better"),
        ("slo.attainment", 0.9, 0.89, "worse"),  # within 2%
        ("slo.attainment", 0.9, 0.8, "regressed"),
        ("latency.ttft.p99", 1.0, 1.5, "regressed"),
        ("latency.ttft.p99", 1.0, 0.5, "better"),
        ("throughput.output_tokens_per_s", 100.0, 90.0, "regressed"),
        ("requests.rejected", 0, 1, "regressed"),
        ("kv.peak_usage_frac", 0.5, 0.2, "regressed"),  # no direction: any big change
        ("kv.peak_usage_frac", 0.5, 0.505, "same"),
        ("latency.ttft.p99", 1.0, math.nan, "regressed"),  # no completed request any more
        ("latency.ttft.p99", math.nan, math.nan, "same"),
    ],
)
def test_judge_is_direction_aware(metric, base, new, verdict):
    assert judge(metric, base, new, rtol=0.02).verdict == verdict


def test_atol_absorbs_small_absolute_changes():
    assert judge("requests.rejected", 0, 1, rtol=0.0, atol=1).verdict == "worse"


def test_default_metrics_skip_wall_time_and_config_echoes():
    base = {"requests": {"completed": 1}, "latency": {}, "throughput": {}, "slo": {"ttft_s": 1.0},
            "sim": {"wall_s": 1.0, "seed": 1}}
    new = {**base, "sim": {"wall_s": 100.0, "seed": 2}, "slo": {"ttft_s": 2.0}}
    assert [d.metric for d in compare_summaries(base, new)] == ["requests.completed"]


def _run(tmp_path, name, *sets):
    cfg = write_config(tmp_path)
    out = tmp_path / name
    args = ["run", str(cfg), "--out", str(out)]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    return out / "summary.json"


def test_cli_same_run_passes_and_worse_policy_fails(tmp_path, capsys):
    a = _run(tmp_path, "a")
    b = _run(tmp_path, "b")
    worse = _run(tmp_path, "w", "engine.max_num_seqs=4")
    capsys.readouterr()
    assert main(["compare", str(a), str(b)]) == 0
    assert "no regressions" in capsys.readouterr().out
    assert main(["compare", str(a), str(worse), "--metrics", "latency.ttft.p99,slo.attainment"]) == 1
    out = capsys.readouterr().out
    assert "latency.ttft.p99" in out and "regressed" in out
    # the other way round: better TTFT and attainment (TPOT gets worse with bigger batches)
    assert main(["compare", str(worse), str(a), "--json", "--metrics",
                 "latency.ttft.p99,slo.attainment"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["regressed"] == 0 and any(m["verdict"] == "better" for m in doc["metrics"])


def test_cli_bad_inputs_exit_2(tmp_path, capsys):
    a = _run(tmp_path, "a")
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"hello": 1}))
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    for args, message in [
        ([str(a), str(other)], "not a servesim summary"),
        ([str(a), str(broken)], "broken.json:1"),
        ([str(a), str(tmp_path / "missing.json")], "cannot read"),
        ([str(a), str(a), "--metrics", "latency.ttft.p999"], "unknown metric"),
        ([str(a)], "expected BASE and NEW"),
        ([str(a), str(a.parent / "requests.csv")], "not a servesim sweep.csv"),
    ]:
        capsys.readouterr()
        assert main(["compare", *args]) == 2, args
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1


def test_cli_compares_two_sweeps_point_by_point(tmp_path, capsys):
    cfg = write_config(tmp_path)
    common = ["--grid", "workload.arrival.rate=10,60", "--workers", "1", "--no-progress"]
    assert main(["sweep", str(cfg), *common, "--out", str(tmp_path / "base")]) == 0
    assert main(["sweep", str(cfg), *common, "--out", str(tmp_path / "same")]) == 0
    assert main(["sweep", str(cfg), *common, "--out", str(tmp_path / "worse"),
                 "--set", "engine.max_num_seqs=4"]) == 0
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "base"), str(tmp_path / "same" / "sweep.csv")]) == 0
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "base"), str(tmp_path / "worse"), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    points = {m["point"] for m in doc["metrics"] if m["verdict"] == "regressed"}
    assert "workload.arrival.rate=60" in points


def test_paired_interval_is_the_t_interval_of_per_seed_differences(tmp_path):
    cfg = write_config(tmp_path, workload={"num_requests": 60, "arrival": {"rate": 40.0}})
    result = paired_compare(cfg, {"engine.max_num_seqs": 256}, {"engine.max_num_seqs": 16},
                            seeds=4, metrics=["latency.ttft.p99", "slo.attainment"])
    per = result.per_seed.pivot(index="seed", columns="variant", values="latency.ttft.p99")
    diff = (per["B"] - per["A"]).to_numpy()
    half = stats.t.ppf(0.975, 3) * diff.std(ddof=1) / np.sqrt(4)
    s = result.stat("latency.ttft.p99")
    assert s.mean_diff == pytest.approx(diff.mean())
    assert (s.ci_low, s.ci_high) == pytest.approx((diff.mean() - half, diff.mean() + half))
    assert result.seeds == [3, 4, 5, 6]
    assert s.verdict == "B worse"  # 16 slots at 40 req/s queue up


def test_common_random_numbers_make_the_paired_interval_tighter(tmp_path):
    # A small policy change: the workload's noise cancels in the per-seed difference.
    cfg = write_config(tmp_path)
    result = paired_compare(cfg, {}, {"engine.max_num_batched_tokens": 4096}, seeds=5,
                            metrics=["latency.e2e.mean"])
    s = result.stat("latency.e2e.mean")
    assert s.ci_high - s.ci_low < 2 * s.unpaired_halfwidth


def test_cli_paired(tmp_path, capsys):
    cfg = write_config(tmp_path)
    code = main(["compare", "--paired", str(cfg), "--set-b", "engine.max_num_seqs=4",
                 "--seeds", "3", "--workers", "1", "--metrics", "latency.ttft.p99"])
    assert code == 1  # B significantly worse
    out = capsys.readouterr().out
    assert "paired over 3 seeds" in out and "B worse" in out
    assert main(["compare", "--paired", str(cfg), "--set-b", "engine.max_num_seqs=4",
                 "--seeds", "1"]) == 2
    assert main(["compare", "--paired", str(cfg), "--set-b", "engine.nosuch=4"]) == 2
    assert "engine.nosuch: unknown key" in capsys.readouterr().err
