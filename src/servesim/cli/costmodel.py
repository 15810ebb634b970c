"""`servesim costmodel calibrate | validate | check | price`: fit, check and query the step cost model."""

from __future__ import annotations

from pathlib import Path

from servesim.cli import throughput
from servesim.cli.common import print_json

EXIT_OK = 0


def register(sub) -> None:
    p = sub.add_parser("costmodel", help="calibrate and validate the step cost model")
    cmds = p.add_subparsers(dest="costmodel_command", required=True, parser_class=type(p))
    cal = _add_calibrate(cmds)
    check = cmds.add_parser("check", help="replay published throughput results and report the error")
    throughput.add_arguments(cal, check)
    _add_validate(cmds)
    _add_price(cmds)


def _add_calibrate(cmds):
    cal = cmds.add_parser("calibrate", help="fit a profile to measurements and/or an engine run")
    cal.add_argument(
        "--measurements",
        action="append",
        default=[],
        metavar="CSV",
        help="measured iterations (docs/interface.md, 'Measurement CSV'); repeatable",
    )
    cal.add_argument(
        "--engine-run",
        metavar="DIR",
        help="a real engine's run folder (docs/fidelity.md): fit the host model and GPU terms to its steps",
    )
    cal.add_argument("--model", help="catalog model the engine run served (with --engine-run)")
    cal.add_argument(
        "--decode-attention",
        help="the engine's decode-attention behaviour (default: the best fit of "
        "mean, max_context, split_kv, batch_kv)",
    )
    cal.add_argument(
        "--graph-batch-sizes",
        help="comma-separated CUDA-graph batch sizes of the engine, or 'none' "
        "(default: from the step log's decode_bucket column)",
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
    return cal


def _add_validate(cmds) -> None:
    val = cmds.add_parser("validate", help="predict every measured row and report the error")
    val.add_argument("--measurements", required=True, metavar="CSV")
    val.add_argument("--hardware", help="catalog hardware (default: from each row's gpu column)")
    val.add_argument("--profile", help="profile YAML (default: the hardware family's shipped one)")
    val.add_argument("--worst", type=int, default=5, help="how many worst rows to list")
    val.add_argument("--json", action="store_true")
    val.set_defaults(handler=cmd_validate)


def _add_price(cmds) -> None:
    pr = cmds.add_parser("price", help="price one step and show where the time goes")
    pr.add_argument("--model", required=True,
                    help="catalog name or an inline spec, e.g. '{base: llama3-70b, weight_dtype: fp8}'")
    pr.add_argument("--hardware", required=True, help="catalog name or an inline spec")
    pr.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a spec field: model.weight_dtype=int4, hardware.hbm_tb_s=4 (repeatable)")
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
    from servesim.calibration import calibrate
    from servesim.catalog.specs import get_hardware
    from servesim.cli import UsageError
    from servesim.core.files import check_output_file
    from servesim.cost.calibrate import IterationData, error_report, predict, resolve_hardware
    from servesim.cost.microbench import AllReduceData, GemmData
    from servesim.cost.profile import ALL_PARAMETERS, CostProfile, resolve_profile, save_profile

    if args.throughput:
        if args.measurements or args.gemm or args.allreduce or args.engine_run or args.hardware \
                or args.holdout:
            raise UsageError("costmodel calibrate: --throughput rows name their devices; give them alone")
        return throughput.cmd_calibrate_throughput(args)
    if not (args.measurements or args.gemm or args.allreduce or args.engine_run):
        raise UsageError(
            "costmodel calibrate: give --engine-run, --measurements, --gemm, --allreduce or --throughput"
        )
    if args.hardware is None:
        raise UsageError("costmodel calibrate: measured data needs --hardware")
    check_output_file(args.out)
    hw = get_hardware(args.hardware, key="--hardware")
    if args.start == "builtin":
        start = CostProfile(source="built-in defaults")
    else:
        start = resolve_profile(hw.family, args.start, key="--start")
    params = _parse_params(args.params, ALL_PARAMETERS)
    engine = _engine_input(args, hw)
    rows = [r for path in args.measurements for r in _read_rows(path)]
    held_out = []
    if args.holdout:
        rows, held_out = _split_holdout(rows, args.holdout)
    iterations = None
    if rows:
        iterations = IterationData(rows, resolve_hardware(rows, args.hardware, args.measurements[0]))
    micro = [GemmData(g, args.hardware, name=f"gemm{i}") for i, g in enumerate(args.gemm)]
    comm = [AllReduceData(a, args.hardware) for a in args.allreduce]
    result = calibrate(start, iterations=iterations, micro=micro, comm=comm, engine=engine, params=params)
    profile = result.profile.with_values(source=_source_note(args, len(rows)))
    out: dict = {"profile": profile.to_dict()["parameters"], "fitted": result.fitted}
    if profile.engine.has_host or profile.engine.graph_batch_sizes:
        out["engine"] = profile.engine.to_dict()
    if rows:
        hws = iterations.hardware
        out["before"] = error_report(rows, predict(rows, hws, start)).to_dict()
        out["after"] = error_report(rows, predict(rows, hws, profile)).to_dict()
    if held_out:
        hws = resolve_hardware(held_out, args.hardware, args.measurements[0])
        report = error_report(held_out, predict(held_out, hws, profile))
        out["holdout"] = {"rule": args.holdout, **report.to_dict()}
    for d in [*micro, *comm]:
        out.setdefault("microbench", []).append(_micro_error(d, profile, result.extras))
    if engine is not None:
        out["engine_run"] = _engine_report(engine, start, profile, result.screening)
    save_profile(profile, args.out, _profile_header(out))
    if args.json:
        print_json(out)
    else:
        print(_format_calibration(out, args.out))
    return EXIT_OK


def _engine_input(args, hw):
    """The engine run to fit, with its model and layout (None without --engine-run)."""
    from servesim.calibration import EngineRunInput
    from servesim.catalog.specs import get_model
    from servesim.cli import UsageError
    from servesim.core.errors import ConfigError
    from servesim.cost.profile import DECODE_ATTENTION
    from servesim.enginerun import read_engine_run

    if args.engine_run is None:
        for flag in ("model", "decode_attention", "graph_batch_sizes"):
            if getattr(args, flag) is not None:
                raise UsageError(f"costmodel calibrate: --{flag.replace('_', '-')} needs --engine-run")
        return None
    if args.model is None:
        raise UsageError("costmodel calibrate: --engine-run needs --model")
    model = get_model(args.model, key="--model")
    if args.decode_attention is not None and args.decode_attention not in DECODE_ATTENTION:
        raise ConfigError("--decode-attention", f"expected one of {', '.join(DECODE_ATTENTION)}")
    from servesim.build import chunked_batching

    run = read_engine_run(args.engine_run, need_steps=True)
    settings = run.settings()
    return EngineRunInput(
        run,
        model,
        hw,
        settings.cluster.tp,
        args.decode_attention,
        _graph_sizes(args.graph_batch_sizes),
        settings.engine.max_num_seqs,
        # unstated: a chunked run attends once per step, as build.py prices chunked batching
        settings.cost.prefill_attention or ("batched" if chunked_batching(settings) else None),
    )


def _graph_sizes(text: str | None):
    from servesim.core.errors import ConfigError

    if text is None:
        return None
    if text.strip() == "none":
        return ()
    try:
        sizes = tuple(sorted({int(x) for x in text.split(",")}))
    except ValueError:
        raise ConfigError("--graph-batch-sizes", f"expected comma-separated integers, got {text!r}") from None
    if not sizes or sizes[0] < 1:
        raise ConfigError("--graph-batch-sizes", "batch sizes must be >= 1")
    return sizes


def _engine_report(engine, start, profile, screening) -> dict:
    """Step-time errors of the start and the fitted profile over every step of the run."""
    from servesim.cost import RooflineCostModel
    from servesim.enginerun.compare import step_errors

    def errors(p):
        cm = RooflineCostModel(engine.model, engine.hardware, tp=engine.tp, profile=p)
        return step_errors(engine.run.steps, cm)

    return {
        "path": str(engine.run.path),
        "decode_attention": profile.decode_attention,
        "screening_rms": screening,
        "before": errors(start),
        "after": errors(profile),
    }


def _profile_header(out: dict) -> str:
    lines = ["servesim cost profile (relative to the spec sheet; see docs/cost-model.md)"]
    if "after" in out:
        a = out["after"]
        lines.append(f"fit: {a['rows']} rows, MAPE {a['mape']:.2f}%, max {a['max_ape']:.2f}%")
    if "engine_run" in out:
        e = out["engine_run"]
        a = e["after"]["all"]
        lines.append(
            f"engine run {e['path']}: {a['steps']} steps, step-time MAPE {a['mape']:.2f}%, "
            f"total {a['total_pct']:+.2f}%; decode attention {e['decode_attention']}"
        )
    if len(lines) == 1:
        lines.append("fit on micro-benchmarks only")
    return "\n".join(lines)


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
    if num_rows:
        files[0] += f" ({num_rows} iterations)" if len(args.measurements) == 1 else ""
    if args.engine_run:
        files.append(f"engine run {Path(args.engine_run).resolve().name}")
    return f"servesim costmodel calibrate on {args.hardware}: {', '.join(files)}"


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
    if "engine_run" in out:
        lines += _format_engine(out["engine_run"])
    lines.append("parameters:")
    for k in out["fitted"]:
        value = out["profile"][k] if k in out["profile"] else out["engine"]["host"].get(k[5:], 0.0)
        lines.append(f"  {k:32} {value:.6g}")
    return "\n".join(lines)


def _format_engine(e: dict) -> list[str]:
    lines = [f"engine run {e['path']}: decode attention {e['decode_attention']}"]
    if e["screening_rms"]:
        lines.append(
            "  screening (RMS log error): "
            + ", ".join(f"{k} {v:.4f}" for k, v in e["screening_rms"].items())
        )
    lines.append(f"  {'step kind':10}{'steps':>7}{'MAPE before':>13}{'after':>8}{'median':>9}{'total':>8}")
    for kind, a in e["after"].items():
        b = e["before"][kind]
        lines.append(
            f"  {kind:10}{a['steps']:>7}{b['mape']:12.2f}%{a['mape']:7.2f}%"
            f"{a['median_pct']:+8.2f}%{a['total_pct']:+7.2f}%"
        )
    return lines


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
def _price_specs(args):
    """The model and hardware specs of `price`: names or inline YAML mappings, plus `--set`."""
    from servesim.catalog.specs import get_hardware, get_model
    from servesim.config.loader import parse_assignment, parse_value, set_dotted
    from servesim.core.errors import ConfigError

    specs = {"model": parse_value(args.model), "hardware": parse_value(args.hardware)}
    for name, spec in specs.items():
        if not isinstance(spec, (str, dict)):
            raise ConfigError(f"--{name}", f"expected a catalog name or a mapping, got {spec!r}")
    for text in args.set:
        key, value = parse_assignment(text)
        if key.split(".", 1)[0] not in specs or "." not in key:
            raise ConfigError("--set", f"expected model.FIELD=VALUE or hardware.FIELD=VALUE, got {text!r}")
        set_dotted(specs, key, value)
    return get_model(specs["model"], key="--model"), get_hardware(specs["hardware"], key="--hardware")


def cmd_price(args) -> int:
    from servesim.core.errors import ConfigError
    from servesim.cost import RooflineCostModel, StepShape
    from servesim.cost.parallel import check_layout
    from servesim.cost.profile import resolve_profile

    model, hw = _price_specs(args)
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
    if any(c < 1 for c, _ in chunks):
        raise ConfigError("--prefill", f"chunk lengths must be >= 1, got {args.prefill!r}")
    for flag, value in (("--prior", args.prior), ("--decodes", args.decodes), ("--ctx", args.ctx)):
        if value < 0:
            raise ConfigError(flag, f"must be >= 0, got {value}")
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
