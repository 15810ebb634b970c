"""`servesim replay DIR`: a real engine run replayed through the simulator, real beside simulated."""

from __future__ import annotations

from pathlib import Path

from servesim.cli.common import print_json

EXIT_OK = 0
ROWS = ("ttft", "tpot", "e2e", "tbt_max")
COLS = ("p50", "p90", "p99", "mean")


def register(sub) -> None:
    p = sub.add_parser("replay", help="replay a real engine run and compare latencies")
    p.add_argument("run_dir", metavar="DIR", help="engine run folder (docs/fidelity.md)")
    p.add_argument("--profile", help="cost profile YAML (e.g. from costmodel calibrate --engine-run)")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key"
    )
    p.add_argument("--out", help="output folder (default: out/replay-<DIR name>)")
    p.add_argument("--json", action="store_true", help="print {real, sim, error_pct, steps} as JSON")
    p.set_defaults(handler=cmd_replay)


def cmd_replay(args) -> int:
    from servesim.cli.common import overrides_from_args
    from servesim.core.files import check_output_dir
    from servesim.enginerun.replay import replay_engine_run

    out = check_output_dir(args.out or Path("out") / f"replay-{Path(args.run_dir).resolve().name}")
    result = replay_engine_run(args.run_dir, args.profile, overrides_from_args(args))
    result.save(out)
    if args.json:
        print_json(result.report())
    else:
        print(format_replay(result.report(), args.run_dir))
        print(f"wrote {out}/{', '.join(result.result.written)}")
    return EXIT_OK


def format_replay(report: dict, path: str) -> str:
    real, sim, err = report["real"], report["sim"], report["error_pct"]
    lines = [f"{path}: latencies in ms, real vs simulated" if real else f"{path}: simulated latencies in ms"]
    lines.append(f"{'':16}" + "".join(f"{c:>10}" for c in COLS))
    for metric in ROWS:
        keys = [f"{metric}.{c}" for c in COLS]
        if not any(k in sim for k in keys):
            continue
        sides = (("real", real), ("sim", sim)) if real else (("sim", sim),)
        for label, side in sides:
            cells = "".join(f"{side[k] * 1e3:10.1f}" if k in side else f"{'-':>10}" for k in keys)
            lines.append(f"{metric + ' ' + label:16}{cells}")
        if err:
            cells = "".join(f"{err[k]:+9.1f}%" if k in err else f"{'-':>10}" for k in keys)
            lines.append(f"{metric + ' error':16}{cells}")
    steps = report.get("steps")
    if steps:
        lines.append(f"step times vs the cost model: {'steps':>7}{'MAPE':>8}{'median':>9}{'total':>9}")
        for kind, s in steps.items():
            lines.append(
                f"  {kind:28}{s['steps']:>7}{s['mape']:7.1f}%{s['median_pct']:+8.1f}%{s['total_pct']:+8.1f}%"
            )
    return "\n".join(lines)
