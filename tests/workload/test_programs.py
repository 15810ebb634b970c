"""Agentic programs: generation and JSONL, issuing calls after their parents plus tool time,
rejection of a failed call's descendants, program metrics, and KV retention across tool calls."""

from __future__ import annotations

import json

import numpy as np
import pytest

from servesim.build import build
from servesim.config import load_config
from servesim.config.workload import ProgramsConfig
from servesim.core.errors import ConfigError, InputFileError
from servesim.simulation import run, simulate
from servesim.workload.programs import generate_programs, programs_table, read_programs
from tests.factories import check_kv


def agentic(**programs):
    return {
        "seed": 3, "model": "llama3-8b", "hardware": "h100-sxm",
        "engine": {"scheduler": "chunked_prefill", "prefix_caching": True,
                   "kv_capacity_tokens": 60000},
        "workload": {
            "arrival": {"process": "poisson", "rate": 0.5},
            "programs": {"num_programs": 8, "calls": {"dist": "uniform", "min": 3, "max": 6},
                         "system_prompt_tokens": 256, **programs},
        },
        "slo": {"ttft_s": 2.0, "tpot_s": 0.1},
    }


def test_each_call_extends_its_parents_conversation():
    cfg = ProgramsConfig(num_programs=5, fan_out=3, fan_out_prob=0.4, hash_block_size=16)
    progs = generate_programs(cfg, np.arange(5.0), np.random.default_rng(1))
    table = programs_table(progs, 16)
    assert len(table) == sum(len(p.parents) for p in progs)
    assert any(len(ps) > 1 for ps in table.call_parents)  # a join after a fan-out
    rows = {(int(p), int(c)): i for i, (p, c) in enumerate(zip(table.program_id, table.call_index))}
    for i, parents in enumerate(table.call_parents):
        if not parents:
            assert table.prompt_tokens[i] > 256 and table.tool_s[i] == 0
            continue
        pid = int(table.program_id[i])
        first = rows[(pid, parents[0])]
        grown = table.prompt_tokens[first] + sum(table.output_tokens[rows[(pid, q)]] for q in parents)
        assert table.prompt_tokens[i] > grown  # plus its own new tokens
        shared = table.prompt_tokens[first] // 16
        assert table.prefix_hashes[i][:shared] == table.prefix_hashes[first][:shared]
        assert 0.5 <= table.tool_s[i] <= 10.0


def test_jsonl_programs_and_a_bad_line(tmp_path):
    good = {"start_s": 1.0, "system_prompt_tokens": 32,
            "calls": [{"new_tokens": 50, "output_tokens": 5},
                      {"tool_s": 2.0, "new_tokens": 20, "output_tokens": 4}]}
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(good) + "\n")
    progs = read_programs(path)
    assert progs[0].parents == [(), (0,)] and progs[0].tool_s == [0.0, 2.0]
    path.write_text(json.dumps(good) + "\n" + json.dumps({"calls": [{"parents": [3]}]}) + "\n")
    with pytest.raises(InputFileError, match=r"p.jsonl:2: bad program"):
        read_programs(path)


def test_bad_program_file_exits_2_with_one_line(tmp_path, capsys):
    from servesim.cli import main

    path = tmp_path / "p.jsonl"
    path.write_text("{not json\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps(agentic(path=str(path))))
    assert main(["run", str(cfg), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "p.jsonl:1" in err[0]
    assert not (tmp_path / "o").exists()


def test_a_call_arrives_after_its_parents_plus_tool_time():
    result = simulate(agentic())
    frame = result.requests
    built = build(load_config(agentic()))
    for r in built.requests:
        if r.program_parents:
            done = max(frame.loc[p, "finish_s"] for p in r.program_parents)
            assert frame.loc[r.request_id, "arrival_s"] == pytest.approx(done + r.program_wait_s)
    programs = result.summary["programs"]
    assert programs["completed"] == programs["programs"] == 8
    waits = sum(r.program_wait_s for r in built.requests)
    assert programs["task_time"]["mean"] * 8 >= waits
    assert 0 < programs["fairness"] <= 1


def test_a_rejected_call_rejects_its_descendants():
    cfg = agentic()
    cfg["engine"]["max_num_batched_tokens"] = 600  # long later prompts are rejected
    cfg["engine"]["scheduler"] = "fcfs"
    result = simulate(cfg)
    req, frame = result.summary["requests"], result.requests
    assert req["arrived"] == req["completed"] + req["rejected"] + req["unfinished"] == len(frame)
    assert (frame["rejected_reason"] == "program_call_rejected").any()
    assert result.summary["programs"]["completed"] < 8


@pytest.mark.parametrize("mode", ["none", "lru", "ttl", "program"])
@pytest.mark.parametrize("tiers", [{}, {"dram": {"capacity_gb": 0.5, "eviction": "program"},
                                        "pool": {"capacity_gb": 1.0, "publish": "compute"}}])
def test_retention_conserves_blocks_and_pins(mode, tiers):
    """Pins, GPU blocks and (with tiers: two instances sharing a pool) tier traffic conserved."""
    cfg = agentic()
    cfg["kv"] = {"retention": {"mode": mode, "ttl_s": 5.0}, **tiers}
    if tiers:
        cfg["cluster"] = {"instances": 2, "router": "round_robin"}

    def check(instance):
        check_kv(instance)  # one check: GPU blocks, tiers, swap space, pins

    built = build(load_config(cfg))
    result = run(built, after_step=check)
    assert result.summary["programs"]["completed"] == 8
    if tiers:  # calls alternate instances: later calls fetch their conversation from the peer
        assert result.summary["kv"]["sources"]["peer"]["hit_tokens"] > 0
    for part in built.parts:
        kv = part.kv
        if tiers:  # the run ends with its last call; a pin whose next call ran on the other
            while kv.retention.pins:  # instance waits for its TTL: release it to count blocks
                kv.retention.release_soonest(kv)
        # every pin ran out, was taken over or released: nothing stays referenced
        assert not kv.retention.pins and kv.num_free_blocks == kv.num_blocks


def test_ttl_pinning_keeps_the_conversation_for_the_next_call():
    rates = {}
    for mode in ("none", "ttl"):
        cfg = agentic()
        cfg["kv"] = {"retention": {"mode": mode, "ttl_s": 20.0}}
        rates[mode] = simulate(cfg).summary["kv"]["prefix_hit_rate"]
    assert rates["ttl"] > rates["none"] + 0.3


def test_programs_are_deterministic_and_their_draws_do_not_depend_on_the_policy():
    first, again = simulate(agentic()), simulate(agentic())
    assert first.summary["programs"] == again.summary["programs"]
    assert first.requests.equals(again.requests)
    other = agentic()
    other["kv"] = {"retention": {"mode": "ttl"}}
    other["engine"]["scheduler"] = "fcfs"
    other["engine"]["max_num_batched_tokens"] = 16384
    changed = simulate(other).requests
    for column in ("prompt_tokens", "output_tokens"):  # lengths are drawn, never served
        assert (changed[column] == first.requests[column]).all()
    roots = [r.request_id for r in build(load_config(agentic())).requests if not r.program_parents]
    assert (changed.loc[roots, "arrival_s"] == first.requests.loc[roots, "arrival_s"]).all()


def test_summary_counts_the_recomputed_conversation():
    """Every later call repeats its parents' conversation; without retention nearly all of it is
    prefilled again, with LRU caching only the parents' outputs and partial blocks are."""
    programs = {}
    for mode in ("none", "lru"):
        cfg = agentic()
        cfg["kv"] = {"retention": {"mode": mode}}
        built = build(load_config(cfg))
        programs[mode] = run(built).summary["programs"]
    later = [r for r in built.requests if r.program_parents]
    by_id = {r.request_id: r for r in built.requests}
    outputs = sum(by_id[p].num_output_tokens for r in later for p in r.program_parents)
    context = sum(by_id[r.program_parents[0]].num_prompt_tokens for r in later) + outputs
    for p in programs.values():
        assert p["context_tokens"] == context and p["recomputed_output_tokens"] == outputs
        assert outputs <= p["recomputed_tokens"] <= context
    assert programs["lru"]["recomputed_tokens"] < 0.5 * programs["none"]["recomputed_tokens"]
    cached = sum(r.num_cached_tokens for r in later)  # the lru run's: what was not recomputed
    assert programs["lru"]["recomputed_tokens"] == context - cached


def test_summary_shows_the_memory_ttl_pins_take():
    retention = {}
    for ttl in (2.0, 60.0):
        cfg = agentic()
        cfg["kv"] = {"retention": {"mode": "ttl", "ttl_s": ttl}}
        result = simulate(cfg)
        retention[ttl] = r = result.summary["kv"]["retention"]
        assert 0 < r["mean_pinned_tokens"] <= r["peak_pinned_tokens"] <= 60000
        assert r["mean_pinned_frac"] == pytest.approx(r["mean_pinned_tokens"] / 60000, rel=0.01)
        assert r["pinned_token_s"] == pytest.approx(
            r["mean_pinned_tokens"] * result.summary["sim"]["simulated_s"])
    assert retention[60.0]["pinned_token_s"] > retention[2.0]["pinned_token_s"]


@pytest.mark.parametrize(
    "programs, key",
    [
        # 5 calls of 1e9 tokens each: the calls' block ids would take terabytes (quadratic in calls)
        ({"num_programs": 1, "calls": {"dist": "fixed", "value": 5},
          "new_tokens": {"dist": "fixed", "value": 10**9, "max": 10**9}, "hash_block_size": 1},
         "workload.programs"),
        ({"num_programs": 100, "calls": {"dist": "fixed", "value": 10**6, "max": 10**6}},
         "workload.programs.calls"),
        ({"system_prompt_tokens": 2**70}, "workload.programs.system_prompt_tokens"),
    ],
)
def test_programs_too_large_to_hold_are_config_errors(programs, key):
    """They used to exhaust memory (or overflow int64) while the calls were made."""
    config = agentic(**programs)
    with pytest.raises(ConfigError) as err:
        build(load_config(config))
    assert err.value.key == key


def test_a_program_file_too_large_to_hold_names_the_path(tmp_path):
    path = tmp_path / "p.jsonl"
    calls = [{"new_tokens": 10**9, "output_tokens": 1}] * 5
    path.write_text(json.dumps({"calls": calls}) + "\n")
    config = agentic()
    config["workload"]["programs"] = {"path": str(path), "hash_block_size": 1}
    with pytest.raises(ConfigError) as err:
        build(load_config(config))
    assert err.value.key == "workload.programs.path"
