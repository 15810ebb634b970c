"""`servesim costmodel calibrate | validate | check | price`: fit, check and query the step cost model."""

from __future__ import annotations

from pathlib import Path

from servesim.cli import throughput
from servesim.cli.common import print_json

EXIT_OK = 0


def register(sub) -> None:
    p = sub.add_parser("costmodel", help="calibrate and validate the step cost model")
    cmds = p.add_subparsers(dest="costmodel_command", required=True, parser_class=type(p))

    cal = cmds.add_parser("calibrate", help="fit a profile's efficiency parameters to measurements")
    cal.add_argument(
        "--measurements",
        action="append",
        default=[],
        metavar="CSV",
        help="measured iterations (INTERFACE.md 'Measurement CSV'); repeatable",
    )
    cal.add_argument("--hardware", help="catalog hardware the rows ran on (not with --throughput)")
    cal.add_argument("--out", required=True, help="profile YAML to write")
    cal.add_argument(
        "--gemm",
        action="append",
        default=[],
        metavar="CSV",
        help="isolated GEMM timings (gpu, M, K, N, ms); repeatable",
    )
    cal.add_argument(
        "--allreduce",
        action="append",
        default=[],
        metavar="CSV",
        help="all-reduce timings (gpu, num_workers, bytes, ms); repeatable",
    )
    cal.add_argument(
        "--start",
        help="profile YAML to start from, or 'builtin' for the data-free defaults "
        "(default: the hardware family's shipped profile)",
    )
    cal.add_argument("--params", help="comma-separated parameters to fit (default: all)")
    cal.add_argument(
        "--holdout",
        metavar="KEY=VALUE",
        help="leave out rows with model=, kind= or tp= VALUE and report the error on them",
    )
    cal.add_argument("--json", action="store_true")
    cal.set_defaults(handler=cmd_calibrate)
    check = cmds.add_parser("check", help="replay published throughput results and report the error")
    throughput.add_arguments(cal, check)

    val = cmds.add_parser("validate", help="predict every measured row and report the error")
    val.add_argument("--measurements", required=True, metavar="CSV")
    val.add_argument("--hardware", help="catalog hardware (default: from each row's gpu column)")
    val.add_argument("--profile", help="profile YAML (default: the hardware family's shipped one)")
    val.add_argument("--worst", type=int, default=5, help="how many worst rows to list")
    val.add_argument("--json", action="store_true")
    val.set_defaults(handler=cmd_validate)

    pr = cmds.add_parser("price", help="price one step and show where the time goes")
    pr.add_argument("--model", required=True)
    pr.add_argument("--hardware", required=True)
    pr.add_argument("--tp", type=int, default=1)
    pr.add_argument("--pp", type=int, default=1)
    pr.add_argument("--expert-parallel", action="store_true")
    pr.add_argument("--prefill", default="", help="'+'-joined chunk lengths, e.g. 512+512")
    pr.add_argument("--prior", type=int, default=0, help="cached tokens before each chunk")
    pr.add_argument("--decodes", type=int, default=0, help="decoding requests")
    pr.add_argument("--ctx", type=int, default=0, help="context length of each decode")
    pr.add_argument("--profile", help="profile YAML (default: the hardware family's)")
    pr.add_argument("--json", action="store_true")
    pr.set_defaults(handler=cmd_price)


# -- calibrate ----------------------------------------------------------------------------------------
def cmd_calibrate(args) -> int:
    from servesim.catalog.specs import get_hardware
    from servesim.cli import UsageError
    from servesim.cost.calibrate import IterationData, error_report, fit, predict, resolve_hardware
    from servesim.cost.microbench import AllReduceData, GemmData
    from servesim.cost.profile import FIT_PARAMETERS, CostProfile, resolve_profile, save_profile

    if args.throughput:
        if args.measurements or args.gemm or args.allreduce or args.hardware or args.holdout:
            raise UsageError("costmodel calibrate: --throughput rows name their devices; give them alone")
        return throughput.cmd_calibrate_throughput(args)
    if not (args.measurements or args.gemm or args.allreduce):
        raise UsageError(
            "costmodel calibrate: give --measurements, --gemm, --allreduce or --throughput data"
        )
    if args.hardware is None:
        raise UsageError("costmodel calibrate: --measurements, --gemm and --allreduce need --hardware")
    hw = get_hardware(args.hardware, key="--hardware")
    if args.start == "builtin":
        start = CostProfile(source="built-in defaults")
    else:
        start = resolve_profile(hw.family, args.start, key="--start")
    params = _parse_params(args.params, FIT_PARAMETERS)
    rows = [r for path in args.measurements for r in _read_rows(path)]
    held_out = []
    if args.holdout:
        rows, held_out = _split_holdout(rows, args.holdout)
    datasets = []
    if rows:
        datasets.append(IterationData(rows, resolve_hardware(rows, args.hardware, args.measurements[0])))
    datasets += [GemmData(g, args.hardware, name=f"gemm{i}") for i, g in enumerate(args.gemm)]
    datasets += [AllReduceData(a, args.hardware) for a in args.allreduce]
    result = fit(datasets, start, params)
    profile = result.profile.with_values(source=_source_note(args, len(rows)))
    out: dict = {"profile": {k: v for k, v in profile.to_dict().items()}, "fitted": result.fitted}
    if rows:
        hws = datasets[0].hardware
        out["before"] = error_report(rows, predict(rows, hws, start)).to_dict()
        out["after"] = error_report(rows, predict(rows, hws, profile)).to_dict()
    if held_out:
        hws = resolve_hardware(held_out, args.hardware, args.measurements[0])
        report = error_report(held_out, predict(held_out, hws, profile))
        out["holdout"] = {"rule": args.holdout, **report.to_dict()}
    for d in datasets[1 if rows else 0 :]:
        out.setdefault("microbench", []).append(_micro_error(d, profile, result.extras))
    header = "servesim cost profile (relative to the spec sheet; see docs/cost-model.md)\n" + (
        f"fit: {out['after']['rows']} rows, MAPE {out['after']['mape']:.2f}%, "
        f"max {out['after']['max_ape']:.2f}%"
        if rows
        else "fit on micro-benchmarks only"
    )
    save_profile(profile, args.out, header)
    if args.json:
        print_json(out)
    else:
        print(_format_calibration(out, args.out))
    return EXIT_OK


def _read_rows(path: str):
    from servesim.cost.measurements import read_measurements

    return read_measurements(path)


def _parse_params(text: str | None, valid: tuple[str, ...]):
    from servesim.core.errors import ConfigError

    if not text:
        return None
    names = [p.strip() for p in text.split(",") if p.strip()]
    for n in names:
        if n not in valid:
            raise ConfigError("--params", f"unknown parameter {n!r}; valid: {', '.join(valid)}")
    return names


def _split_holdout(rows, rule: str):
    from servesim.core.errors import ConfigError

    key, sep, value = rule.partition("=")
    if not sep or key not in ("model", "kind", "tp"):
        raise ConfigError("--holdout", f"expected model=NAME, kind=KIND or tp=N, got {rule!r}")
    test = [r for r in rows if str(getattr(r, key)) == value]
    train = [r for r in rows if str(getattr(r, key)) != value]
    if not test or not train:
        raise ConfigError("--holdout", f"{rule!r} must leave rows on both sides ({len(test)} held out)")
    return train, test


def _source_note(args, num_rows: int) -> str:
    files = [Path(p).name for p in args.measurements + args.gemm + args.allreduce]
    return f"servesim costmodel calibrate on {args.hardware}: {', '.join(files)} ({num_rows} iterations)"


def _micro_error(dataset, profile, extras) -> dict:
    import numpy as np

    r = dataset.residuals(profile, extras)
    ape = np.abs(np.exp(r) - 1) * 100
    return {
        "kind": type(dataset).__name__,
        "rows": len(r),
        "mape": float(ape.mean()),
        "p90_ape": float(np.percentile(ape, 90)),
        "max_ape": float(ape.max()),
    }


def _format_calibration(out: dict, path: str) -> str:
    lines = [f"wrote {path}"]
    if "after" in out:
        b, a = out["before"], out["after"]
        lines.append(f"{'':10}{'MAPE':>8}{'p90':>8}{'max':>8}   ({a['rows']} rows)")
        for name, r in (("start", b), ("fitted", a)):
            lines.append(f"{name:10}{r['mape']:7.2f}%{r['p90_ape']:7.2f}%{r['max_ape']:7.2f}%")
    if "holdout" in out:
        h = out["holdout"]
        lines.append(
            f"{'held out':10}{h['mape']:7.2f}%{h['p90_ape']:7.2f}%{h['max_ape']:7.2f}%"
            f"   ({h['rows']} rows with {h['rule']}, not fitted)"
        )
    for m in out.get("microbench", []):
        errors = f"{m['mape']:7.2f}%{m['p90_ape']:7.2f}%{m['max_ape']:7.2f}%"
        lines.append(f"{m['kind']:10}{errors}   ({m['rows']} rows)")
    lines.append("parameters:")
    for k in out["fitted"]:
        lines.append(f"  {k:32} {out['profile'][k]:.6g}")
    return "\n".join(lines)


# -- validate -----------------------------------------------------------------------------------------
def cmd_validate(args) -> int:
    import numpy as np

    from servesim.cost.calibrate import error_report, predict, resolve_hardware
    from servesim.cost.measurements import read_measurements
    from servesim.cost.profile import resolve_profile

    rows = read_measurements(args.measurements)
    hws = resolve_hardware(rows, args.hardware, args.measurements)
    families = sorted({h.family for h in hws})
    profiles = {f: resolve_profile(f, args.profile, key="--profile") for f in families}
    preds = np.empty(len(rows))
    for family, profile in profiles.items():
        idx = [i for i, h in enumerate(hws) if h.family == family]
        preds[idx] = predict([rows[i] for i in idx], [hws[i] for i in idx], profile)
    report = error_report(rows, preds, worst=args.worst).to_dict()
    report["hardware"] = sorted({h.name for h in hws})
    report["profile"] = args.profile or ", ".join(f"{f} (shipped)" for f in families)
    if args.json:
        print_json(report)
    else:
        print(format_report(report, args.measurements))
    return EXIT_OK


def format_report(r: dict, path: str) -> str:
    lines = [
        f"{path}: {r['rows']} rows on {', '.join(r['hardware'])}, profile {r['profile']}",
        f"MAPE {r['mape']:.2f}%   p90 {r['p90_ape']:.2f}%   max {r['max_ape']:.2f}%",
        f"{'group':40}{'rows':>6}{'MAPE %':>9}{'max %':>9}",
    ]
    for key, g in r["by_kind"].items():
        lines.append(f"{key:40}{g['rows']:>6}{g['mape']:>9.2f}{g['max_ape']:>9.2f}")
    lines.append("worst rows:")
    for w in r["worst"]:
        lines.append(
            f"  line {w['line']:<5} {w['row']}: measured {w['measured_ms']:.3f} ms, "
            f"predicted {w['predicted_ms']:.3f} ms ({w['error_pct']:+.1f}%)"
        )
    return "\n".join(lines)


# -- price --------------------------------------------------------------------------------------------
def cmd_price(args) -> int:
    from servesim.catalog.specs import get_hardware, get_model
    from servesim.core.errors import ConfigError
    from servesim.cost import RooflineCostModel, StepShape
    from servesim.cost.parallel import check_layout
    from servesim.cost.profile import resolve_profile

    model = get_model(args.model, key="--model")
    hw = get_hardware(args.hardware, key="--hardware")
    for key, v in (("--tp", args.tp), ("--pp", args.pp)):
        if v < 1:
            raise ConfigError(key, f"must be >= 1, got {v}")
    try:
        check_layout(model, args.tp, args.pp, args.expert_parallel)
    except ConfigError as exc:  # name the flag, not the config key
        flag = {"cluster.tp": "--tp", "cluster.pp": "--pp"}.get(exc.key, "--expert-parallel")
        raise ConfigError(flag, str(exc).split(": ", 1)[1]) from None
    try:
        chunks = [(int(c), args.prior) for c in args.prefill.split("+")] if args.prefill else []
    except ValueError:
        raise ConfigError("--prefill", f"expected '+'-joined integers, got {args.prefill!r}") from None
    if any(c < 1 for c, _ in chunks) or min(args.prior, args.decodes, args.ctx) < 0:
        raise ConfigError("--prefill", "lengths and counts must be positive")
    cm = RooflineCostModel(
        model,
        hw,
        tp=args.tp,
        pp=args.pp,
        expert_parallel=args.expert_parallel,
        profile=resolve_profile(hw.family, args.profile, key="--profile"),
    )
    cost = cm.breakdown(StepShape(chunks, args.decodes, args.decodes * args.ctx))
    out = {
        "total_s": cost.total_s,
        "by_op": cost.by_op,
        "compute_s": cost.compute_s,
        "memory_s": cost.memory_s,
        "comm_s": cost.comm_s,
        "overhead_s": cost.overhead_s,
    }
    if args.json:
        print_json(out)
    else:
        print(f"{model.name} on {hw.name} tp={args.tp} pp={args.pp}: {cost.total_s * 1e3:.3f} ms")
        for k, v in sorted(cost.by_op.items(), key=lambda kv: -kv[1]):
            print(f"  {k:12} {v * 1e3:9.3f} ms  {100 * v / cost.total_s:5.1f}%")
        print(
            f"  compute-bound {cost.compute_s * 1e3:.3f} ms, memory-bound {cost.memory_s * 1e3:.3f} ms, "
            f"communication {cost.comm_s * 1e3:.3f} ms, overheads {cost.overhead_s * 1e3:.3f} ms"
        )
    return EXIT_OK
