"""Perfetto trace export and plots."""

import json
from collections import defaultdict
from itertools import pairwise

import pytest

from servesim import simulate
from servesim.cli import main
from servesim.studies import plots
from servesim.studies.timeline import chrome_trace
from tests.factories import write_config

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    cfg = write_config(tmp_path_factory.mktemp("cfg"), cluster={"instances": 2})
    return simulate(cfg)


def test_trace_is_well_formed(result):
    trace = chrome_trace(result)
    events = trace["traceEvents"]
    names = {e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "process_name"}
    assert names == {"instance 0", "instance 1"}
    # async slices: every begin has its end, properly nested, with non-negative duration
    stacks = defaultdict(list)
    phases = defaultdict(list)
    for e in events:
        if e["ph"] == "b":
            stacks[e["id"]].append(e)
        elif e["ph"] == "e":
            begin = stacks[e["id"]].pop()
            assert begin["name"] == e["name"] and e["ts"] >= begin["ts"]
            phases[e["id"]].append(e["name"])
    assert all(not s for s in stacks.values())
    completed = result.requests[result.requests["status"] == "completed"]
    assert len(phases) == len(result.requests)
    for rid in completed["request_id"]:
        assert phases[rid][-1] == f"request #{rid}" and "decode" in phases[rid]
    # steps: one slice per step row, none overlapping on an instance
    steps = [e for e in events if e["ph"] == "X"]
    assert len(steps) == len(result.steps)
    for pid in (1, 2):
        mine = sorted((e["ts"], e["ts"] + e["dur"]) for e in steps if e["pid"] == pid)
        assert all(a[1] <= b[0] + 1e-3 for a, b in pairwise(mine))
    # queue phases end where the first step that computes the request starts
    row = completed.iloc[5]
    queued = [e for e in events if e.get("id") == row["request_id"] and e["name"] == "queued"]
    if queued:
        assert queued[1]["ts"] == pytest.approx(row["first_scheduled_s"] * 1e6, abs=1e-3)


def test_trace_is_capped(result):
    trace = chrome_trace(result, max_steps=10, max_requests=3)
    events = trace["traceEvents"]
    assert sum(e["ph"] == "X" for e in events) == 10
    assert len({e["id"] for e in events if e["ph"] == "b"}) == 3
    assert trace["otherData"]["requests"] == f"3 of {len(result.requests)} requests"


def test_timeline_cli(tmp_path, capsys):
    cfg = write_config(tmp_path)
    out = tmp_path / "t" / "trace.json"
    assert main(["timeline", str(cfg), "--out", str(out), "--max-requests", "5"]) == 0
    trace = json.loads(out.read_text())
    assert len({e["id"] for e in trace["traceEvents"] if e["ph"] == "b"}) == 5
    assert "perfetto" in capsys.readouterr().out


def test_plot_functions_draw(result, tmp_path):
    figs = {
        "cdf": plots.latency_cdfs({"a": result, "b": result.requests}, slo={"ttft": 0.5}),
        "timeline": plots.instance_timeline(result),
        "cost": plots.cost_breakdown(result.config),
    }
    for name, fig in figs.items():
        path = tmp_path / f"{name}.png"
        fig.savefig(path)
        assert path.read_bytes().startswith(PNG)
    cdf_axes = figs["cdf"].axes
    assert len(cdf_axes) == 3 and len(cdf_axes[0].get_lines()) == 3  # two runs + the SLO line


def test_sweep_plots_and_cli(tmp_path, capsys):
    cfg = write_config(tmp_path)
    sweep = tmp_path / "sw"
    assert main(["sweep", str(cfg), "--grid", "workload.arrival.rate=5,40",
                 "--grid", "engine.max_num_seqs=8,64", "--seeds", "2", "--workers", "1",
                 "--out", str(sweep), "--no-progress"]) == 0
    fig = plots.attainment_vs_rate(sweep, hue="engine.max_num_seqs", target=0.9)
    lines = [ln for ln in fig.axes[0].get_lines() if ln.get_label() in ("8", "64")]
    assert len(lines) == 2 and len(lines[0].get_xdata()) == 2  # seeds averaged per rate
    run = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(run)]) == 0
    for args in (
        ["attainment", str(sweep), "--hue", "engine.max_num_seqs"],
        ["latency-throughput", str(sweep / "sweep.csv")],
        ["cdf", str(run), str(run / "requests.csv"), "--labels", "x,y"],
        ["timeline", str(cfg)],
        ["cost", str(cfg)],
    ):
        out = tmp_path / f"{args[0]}.png"
        assert main(["plot", *args, "--out", str(out)]) == 0, args
        assert out.read_bytes().startswith(PNG)
    capsys.readouterr()
    assert main(["plot", "attainment", str(sweep), "--x", "nosuch", "--out", str(tmp_path / "x.png")]) == 2
    assert main(["plot", "cost", str(cfg), "--out", str(tmp_path / "x.txt")]) == 2
    assert main(["plot", "cdf", str(tmp_path / "nope"), "--out", str(tmp_path / "x.png")]) == 2
    assert not (tmp_path / "x.png").exists()


def test_disaggregated_requests_span_their_prefill_and_decode_instances(tmp_path):
    disagg = {"router": "round_robin", "disaggregation": {
        "prefill_instances": 1, "decode_instances": 1,
        "kv_link": {"bandwidth_gb_s": 50, "latency_s": 2.0e-5}}}
    run = simulate(write_config(tmp_path, cluster=disagg))
    events = chrome_trace(run)["traceEvents"]
    row = run.requests[run.requests["status"] == "completed"].iloc[0]
    rid = int(row["request_id"])
    front = [e for e in events if e.get("id") == f"{rid}-prefill"]
    back = [e for e in events if e.get("id") == rid]
    assert {e["pid"] for e in front} == {int(row["prefill_instance"]) + 1}
    assert {e["pid"] for e in back} == {int(row["instance"]) + 1}
    assert [e["name"] for e in back if e["ph"] == "b"] == [f"request #{rid}", "kv transfer", "decode"]
    assert front[-1]["ts"] == pytest.approx(row["handoff_s"] * 1e6, abs=1e-3) == back[0]["ts"]
