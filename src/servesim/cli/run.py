"""`servesim run` and `servesim validate`."""

from __future__ import annotations

import json
from pathlib import Path

from servesim.cli.common import add_config_args, load_from_args, print_json, simulate_with_progress
from servesim.core.files import check_output_dir

EXIT_OK = 0
COMMANDS = ("run", "validate")
"""What `register` adds (the command line builds only these when one of them is asked for)."""


def register(sub) -> None:
    p = sub.add_parser("run", help="run one simulation")
    add_config_args(p)
    p.add_argument("--out", help="output folder (default: output.dir or out/<config name>)")
    p.add_argument("--json", action="store_true", help="print summary.json instead of a table")
    p.set_defaults(handler=cmd_run, resumes_collection=True)

    v = sub.add_parser("validate", help="load and check a config without running it")
    add_config_args(v)
    v.add_argument("--json", action="store_true")
    v.set_defaults(handler=cmd_validate, resumes_collection=True)  # start-up only


def cmd_run(args) -> int:
    config = load_from_args(args)
    out = check_output_dir(args.out or config.output.dir or Path("out") / Path(args.config).stem)
    result = simulate_with_progress(config)
    result.save(out)
    if args.json:
        print_json(result.summary)
    else:
        print(format_summary(result.summary))
        print(f"wrote {out}/{', '.join(result.written)}")
    return EXIT_OK


def cmd_validate(args) -> int:
    from servesim.build import build
    from servesim.metrics.timeseries import check_size

    config = load_from_args(args)
    built = build(config)
    if config.output.timeseries_csv and len(built.table):  # what `run` checks before simulating
        check_size(float(built.table.arrival_s.max()), config.output.timeseries_interval_s, len(built.parts))
    info = {
        "valid": True,
        "requests": len(built.table),
        "instances": len(built.parts),
        "kv_capacity_tokens": built.kv_capacity_tokens,
    }
    if args.json:
        print(json.dumps(info))
    else:
        pools = built.pool_table()
        capacity = (
            ", ".join(f"{p['name']} {p['kv_capacity_tokens']}" for p in pools)
            if len(pools) > 1
            else str(info["kv_capacity_tokens"])
        )
        print(
            f"{args.config}: ok ({info['requests']} requests, {info['instances']} instance(s), "
            f"KV capacity {capacity} tokens per instance)"
        )
    return EXIT_OK


def format_summary(s: dict) -> str:
    req, lat, thr, slo, kv, sim = (s[k] for k in ("requests", "latency", "throughput", "slo", "kv", "sim"))
    lines = [
        f"requests   arrived {req['arrived']}  completed {req['completed']}  "
        f"rejected {req['rejected']}  unfinished {req['unfinished']}"
        + (f"  failed {req['failed']}  retried {req['retried']}" if "retried" in req else ""),
        f"{'latency (s)':<11}{'mean':>10}{'p50':>10}{'p90':>10}{'p99':>10}",
    ]
    for name in ("ttft", "tpot", "e2e", "tbt_max"):
        st = lat[name]
        lines.append(f"{name:<11}" + "".join(f"{st[k]:>10.4f}" for k in ("mean", "p50", "p90", "p99")))
    lines += [
        f"throughput {thr['requests_per_s']:.2f} req/s  {thr['input_tokens_per_s']:.0f} in tok/s  "
        f"{thr['output_tokens_per_s']:.0f} out tok/s",
        f"slo        ttft <= {slo['ttft_s']}s, tpot <= {slo['tpot_s']}s: attainment "
        f"{slo['attainment']:.3f}, goodput {slo['goodput_rps']:.2f} req/s",
        f"kv         peak usage {kv['peak_usage_frac']:.3f}  preemptions {kv['preemptions']}  "
        f"prefix hit rate {kv['prefix_hit_rate']:.3f}",
        f"sim        {sim['simulated_s']:.1f} simulated s in {sim['wall_s']:.2f} wall s, "
        f"{sim['iterations']} steps, seed {sim['seed']}",
    ]
    lines += format_cluster(s.get("cluster", {}))
    lines += format_kv_and_programs(s)
    if "slots" in s.get("cluster", {}):
        c = s["cluster"]
        lines.append(
            f"fleet      {c['instance_hours']:.3f} instance-hours, peak {c['peak_instances']}, "
            f"{c['cold_starts']} cold starts of {c['cold_start_s']:.1f} s, {c['failures']} failures, "
            f"{c['migrations']} migrations ({c['migrated_bytes'] / 1e9:.1f} GB)"
        )
    return "\n".join(lines)


def format_kv_and_programs(s: dict) -> list[str]:
    """Hits by source when KV tiers or a pool are in use, what retention pinned, agentic programs."""
    lines, kv = [], s["kv"]
    sources = kv.get("sources", {})
    if len(sources) > 1:
        hits = "  ".join(f"{name} {v['hit_rate']:.3f}" for name, v in sources.items())
        lines.append(f"kv hits    by source: {hits}")
    if "retention" in kv:
        r = kv["retention"]
        pinned = (f": {r['mean_pinned_frac']:.1%} of the KV pinned on average (peak "
                  f"{r['peak_pinned_tokens']} tokens), {r['pins']} pins" if r["mode"] == "ttl" else "")
        lines.append(f"retention  {r['mode']}{pinned}")
    p = s.get("programs")
    if p:
        task, context = p["task_time"], p["context_tokens"]
        redone = f", {p['recomputed_tokens'] / context:.1%} of the conversation recomputed" if context else ""
        lines.append(
            f"programs   {p['completed']}/{p['programs']} completed, task time mean {task['mean']:.1f} s "
            f"p90 {task['p90']:.1f} s{redone}"
        )
    return lines


def format_cluster(c: dict) -> list[str]:
    """Pools and the KV link, when the cluster is more than one homogeneous pool."""
    pools, link = c.get("pools") or [], c.get("kv_link")
    if len(pools) < 2 and not link:
        return []
    desc = ", ".join(f"{p['name']} {p['instances']} x {p['hardware']} tp{p['tp']}" for p in pools)
    lines = [f"cluster    {desc}"]
    if link:
        lines.append(
            f"kv link    {link['transfers']} transfers, mean {link['mean_transfer_s'] * 1e3:.1f} ms "
            f"+ wait {link['mean_wait_s'] * 1e3:.1f} ms, utilization {link['utilization']:.2f}"
        )
    return lines
