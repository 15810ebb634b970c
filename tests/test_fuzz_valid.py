"""End-to-end fuzzing with valid configs: random small configs across every feature (policies,
routers, prefix caching, disaggregation, pools, preemption modes, sessions, classes, agentic programs,
KV tiers and retention, autoscaling, failures, stragglers, migration, every catalog accelerator family,
models, engine kinds, power, SLO objectives, length filters, tiny and huge KV), run in-process through
the Python API and through the CLI's entry function.

On every run: no exception; KV conservation after every step of every instance; conservation of
requests checked against the written requests.csv (not by construction); causality per request;
determinism (the same config twice gives the same results); the written config.yaml loads back to the
same config. CI runs `FUZZ_VALID_EXAMPLES` configs (set SERVESIM_FUZZ_RANDOM=1 for fresh draws).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pandas as pd
import yaml
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from servesim.build import build
from servesim.cli import main
from servesim.config import load_config
from servesim.simulation import run
from tests.fuzz_strategies import valid_configs

FUZZ_VALID_EXAMPLES = 300
SETTINGS = settings(
    max_examples=FUZZ_VALID_EXAMPLES,
    deadline=None,
    database=None,
    derandomize=not os.environ.get("SERVESIM_FUZZ_RANDOM"),
    suppress_health_check=list(HealthCheck),
    phases=(Phase.explicit, Phase.reuse, Phase.generate),  # no shrinking: CI time; the example is printed
)


def check_kv(instance) -> None:
    """KV conservation after a step: the KV manager's own check."""
    instance.kv.check_conservation()


def volatile(summary: dict) -> dict:
    out = json.loads(json.dumps(summary))
    out["sim"].pop("wall_s")
    return out


def check_outputs(out: Path, summary: dict, config) -> None:
    """requests.csv (when written) against summary.json: every request once, statuses add up,
    per-request causality; config.yaml reloads to the same config."""
    req = summary["requests"]
    assert req["arrived"] == req["completed"] + req["rejected"] + req["unfinished"] + req.get("failed", 0)
    if config.output.requests_csv:
        frame = pd.read_csv(out / "requests.csv", keep_default_na=False, na_values=[""])
        assert len(frame) == req["arrived"] and frame["request_id"].is_unique
        counts = frame["status"].value_counts().to_dict()
        for status in ("completed", "rejected", "unfinished"):
            assert counts.get(status, 0) == req[status], (status, counts, req)
        done = frame[frame["status"] == "completed"]
        assert (done["arrival_s"] <= done["first_token_s"] + 1e-12).all()
        assert (done["first_token_s"] <= done["finish_s"] + 1e-12).all()
        assert (done["e2e_s"] + 1e-12 >= done["ttft_s"]).all()
        assert (done["generated_tokens"] == done["output_tokens"]).all()
        sched = frame["first_scheduled_s"].dropna()
        assert (sched + 1e-12 >= frame.loc[sched.index, "arrival_s"]).all()
        rejected = frame[frame["status"] == "rejected"]
        assert rejected["rejected_reason"].astype(str).str.len().gt(0).all()
    else:
        assert not (out / "requests.csv").exists()
    reloaded = load_config(out / "config.yaml")
    assert reloaded.model_dump() == config.model_dump()


def via_api(data: dict, out: Path) -> dict:
    config = load_config(data)
    built = build(config)
    result = run(built, after_step=check_kv)
    for part in built.parts:
        assert part.kv.num_free_blocks == part.kv.num_blocks or config.max_sim_time_s, "blocks leaked"
    result.save(out)
    check_outputs(out, result.summary, config)
    again = run(build(load_config(data)))
    assert volatile(again.summary) == volatile(result.summary)
    pd.testing.assert_frame_equal(again.requests, result.requests)
    return volatile(result.summary)


def via_cli(data: dict, out: Path) -> dict:
    cfg = out.parent / "config.yaml"
    cfg.write_text(yaml.safe_dump(data))
    assert main(["run", str(cfg), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    check_outputs(out, summary, load_config(cfg))
    assert main(["run", str(cfg), "--out", str(out.parent / "again"), "--json"]) == 0
    again = json.loads((out.parent / "again" / "summary.json").read_text())
    assert volatile(again) == volatile(summary)
    return volatile(summary)


@SETTINGS
@given(valid_configs(), st.booleans())
def test_random_valid_configs_keep_every_invariant(data, through_cli):
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        summary = via_cli(data, out) if through_cli else via_api(data, out)
    # what the runs exercised (pytest --hypothesis-show-statistics)
    for what, seen in (
        ("rejections", summary["requests"]["rejected"]),
        ("unfinished", summary["requests"]["unfinished"]),
        ("preemptions", summary["kv"]["preemptions"]),
        ("prefix hits", summary["kv"]["prefix_hit_rate"]),
    ):
        event(f"{what}: {'some' if seen else 'none'}")
