"""`servesim sweep | capacity | compare | timeline` (and `plot`, from cli/plot.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from servesim.cli.common import add_config_args, overrides_from_args, print_json
from servesim.config import parse_assignment
from servesim.core.errors import ConfigError
from servesim.core.files import check_output_dir, check_output_file, jsonable, write_folder
from servesim.progress import progress_bar

EXIT_OK, EXIT_CHECK_FAILED = 0, 1
HEADLINE = ("slo.attainment", "latency.ttft.p99", "latency.tpot.p99", "throughput.output_tokens_per_s")


def register(sub) -> None:
    from servesim.cli import plot

    _register_sweep(sub)
    _register_capacity(sub)
    _register_placement(sub)
    _register_compare(sub)
    _register_timeline(sub)
    plot.register(sub)


# -- sweep ----------------------------------------------------------------------------------------
def _register_sweep(sub) -> None:
    p = sub.add_parser("sweep", help="run a grid of config points, one sweep.csv row per point")
    add_config_args(p)
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="an axis of the cross product (repeatable)")
    p.add_argument("--points", metavar="FILE.yaml", help="a YAML list of points (mappings of keys)")
    p.add_argument("--seeds", type=int, metavar="N",
                   help="add a seed axis: the config's seed and the N-1 after it")
    _add_parallel_args(p)
    p.add_argument("--address", help="Ray cluster address (with --backend ray; default: local Ray)")
    p.add_argument("--out", required=True, help="folder for sweep.csv")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted sweep in --out: rerun only points without an ok row")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--keep-runs", action="store_true",
                   help="also write each point's run files (requests.csv, summary.json, ...) "
                        "into OUT/runs/NNNN")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_sweep)


def _add_parallel_args(p) -> None:
    p.add_argument("--workers", type=int, help="parallel simulations (default: CPU count)")
    p.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="local processes (default) or a Ray cluster")


def cmd_sweep(args) -> int:
    from servesim.studies.points import load_points, parse_grid
    from servesim.studies.sweep import SWEEP_CSV, plan_sweep, run_sweep

    check_output_dir(args.out)
    if not args.resume and (Path(args.out) / SWEEP_CSV).exists():
        raise ConfigError("--out", f"{Path(args.out) / SWEEP_CSV} exists; pass --resume to continue it, "
                                   "or choose another --out")
    grid = parse_grid(args.grid)
    points = load_points(args.points) if args.points else None
    plan = plan_sweep(args.config, grid, points, args.seeds, overrides_from_args(args))
    frame = run_sweep(plan, args.out, args.workers, args.backend, args.address, args.resume,
                      progress=not args.no_progress, keep_runs=args.keep_runs)
    failed = int((frame["status"] != "ok").sum())
    if args.json:
        rows = json.loads(frame.to_json(orient="records"))
        print_json({"csv": str(Path(args.out) / SWEEP_CSV), "points": len(frame),
                    "ok": len(frame) - failed, "failed": failed, "rows": rows})
    else:
        print(_sweep_table(frame, plan.keys))
        print(f"{len(frame)} points: {len(frame) - failed} ok, {failed} failed; "
              f"wrote {Path(args.out) / SWEEP_CSV}")
        if failed:
            first = frame[frame["status"] != "ok"].iloc[0]
            print(f"first failure: {first['error']} (see the error column)")
    return EXIT_CHECK_FAILED if failed else EXIT_OK


def _sweep_table(frame, keys) -> str:
    cols = keys + [c for c in HEADLINE if c in frame.columns] + ["status"]
    table = frame[cols].copy()
    for c in HEADLINE:
        if c in table:
            table[c] = table[c].map(lambda v: "" if math.isnan(v) else f"{v:.4g}")
    return table.to_string(index=False)


# -- capacity -------------------------------------------------------------------------------------
def _register_capacity(sub) -> None:
    from servesim.studies.steady import SteadyPolicy

    p = sub.add_parser("capacity", help="the largest load (or fewest resources) meeting a target")
    add_config_args(p)
    p.add_argument("--target-attainment", type=float, metavar="A",
                   help="SLO attainment must stay >= A, in (0, 1]")
    p.add_argument("--target", action="append", default=[], metavar="METRIC<=V",
                   help="a metric target, e.g. latency.ttft.p99<=0.5 (repeatable; all must hold)")
    p.add_argument("--vary", default="workload.arrival.rate", metavar="KEY",
                   help="the key to search (default workload.arrival.rate; e.g. cluster.instances)")
    p.add_argument("--direction", choices=("max", "min"),
                   help="find the largest (max) or smallest (min) value meeting the targets "
                        "(default: max for workload.* keys, min otherwise)")
    p.add_argument("--low", type=float, help="lower end of the search (with --high)")
    p.add_argument("--high", type=float, help="upper end of the search (with --low)")
    p.add_argument("--seeds", type=int, default=1, help="seeds per evaluation (metrics averaged)")
    p.add_argument("--rtol", type=float, default=0.02,
                   help="stop bisecting a continuous key when the bracket is this narrow (relative)")
    p.add_argument("--max-evals", type=int, default=40)
    p.add_argument("--max-requests", type=int, default=SteadyPolicy.max_requests,
                   help="lengthen runs too short for steady state up to this many requests "
                        f"(default {SteadyPolicy.max_requests})")
    p.add_argument("--no-steady-check", action="store_true",
                   help="judge each run as it is, however short (see docs/studies.md)")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="search each point of this grid (repeatable): a table of capacities, as "
                        "`servesim placement` prints")
    p.add_argument("--points", metavar="FILE.yaml", help="search each listed point")
    p.add_argument("--objective", default="gpus", help="with --grid/--points: cost per point")
    _add_parallel_args(p)
    p.add_argument("--out", help="folder for capacity.json and the config at the found value")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_capacity, address=None)


def cmd_capacity(args) -> int:
    from servesim.config import load_config
    from servesim.simulation import dump_config
    from servesim.studies.capacity import attainment_target, find_capacity, parse_target
    from servesim.studies.steady import SteadyPolicy

    targets = [parse_target(t) for t in args.target]
    if args.target_attainment is not None:
        targets.insert(0, attainment_target(args.target_attainment))
    if not targets:
        raise ConfigError("--target-attainment", "give --target-attainment A or --target METRIC<=V")
    if (args.low is None) != (args.high is None):
        raise ConfigError("--low" if args.low is None else "--high", "give --low and --high together")
    if args.seeds < 1 or args.max_evals < 2 or not 0 < args.rtol < 1:
        raise ConfigError("--seeds", "--seeds >= 1, --max-evals >= 2 and 0 < --rtol < 1 expected")
    if args.out:
        check_output_dir(args.out)
    if args.max_requests < 1:
        raise ConfigError("--max-requests", f"must be >= 1, got {args.max_requests}")
    steady = None if args.no_steady_check else SteadyPolicy(max_requests=args.max_requests)
    if args.grid or args.points:
        if args.low is not None:
            raise ConfigError("--low", "not with --grid/--points (each point starts at its own value)")
        return _grid_capacity(args, targets, steady)
    config = load_config(args.config, overrides_from_args(args))
    bar = progress_bar(args.max_evals, "capacity", "evaluations")

    def show(e):
        verdict = "met" if e.met else "missed"
        shown = ", ".join(f"{t.metric} {e.metrics.get(t.metric, float('nan')):.4g}" for t in targets)
        length = f" ({e.num_requests} requests)" if e.num_requests else ""
        note = f"; {e.steady}" if e.steady.startswith("unsustainable") else ""
        bar.set_postfix_str(f"{args.vary}={e.value:g}{length}: {shown} -> {verdict}{note}", refresh=False)
        bar.update()

    try:
        result = find_capacity(config, targets, args.vary, args.direction, args.low, args.high,
                               args.seeds, args.rtol, args.max_evals, on_eval=show, steady=steady)
    finally:
        bar.close()
    report = result.to_dict()
    if args.out:
        text = json.dumps(jsonable(report), indent=2) + "\n"
        files = {"capacity.json": lambda p: p.write_text(text)}
        if result.met:
            found = dump_config(load_config(config, {args.vary: result.value, **result.length_override()}))
            files["config.yaml"] = lambda p: p.write_text(found)
        write_folder(args.out, files, ("capacity.json", "config.yaml"))
    if args.json:
        print_json(report)
    else:
        print(_capacity_text(result, report))
    return EXIT_OK if result.met else EXIT_CHECK_FAILED


def _capacity_text(result, report) -> str:
    goal = " and ".join(report["targets"])
    n = len(result.evaluations)
    if not result.met:
        tried = sorted(e.value for e in result.evaluations)
        return (f"{result.key}: no value tried meets {goal} (tried {tried[0]:g}..{tried[-1]:g}, "
                f"{n} evaluations)")
    word = "largest" if result.direction == "max" else "smallest"
    att = report["attainment_at_value"]
    note = "" if result.bracketed else " (search limit reached with the target still met)"
    best = result.at_value()
    runs = f" (runs of {best.num_requests} requests)" if best.num_requests else ""
    att_text = f"attainment there {att:.4f}; " if att is not None else ""
    return (f"{result.key}: {word} value meeting {goal} is {result.value:g}{note}{runs}; "
            f"{att_text}{n} evaluations")


# -- placement ------------------------------------------------------------------------------------
def _register_placement(sub) -> None:
    from servesim.studies.steady import SteadyPolicy

    p = sub.add_parser("placement", help="capacity of each placement (grid of pools, TP, limits) "
                                         "and capacity per GPU (or another objective)")
    add_config_args(p)
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="an axis of placements, e.g. cluster.disaggregation.prefill_tp=1,2 (repeatable)")
    p.add_argument("--points", metavar="FILE.yaml", help="a YAML list of placements")
    p.add_argument("--target-attainment", type=float, metavar="A", help="SLO attainment >= A")
    p.add_argument("--target", action="append", default=[], metavar="METRIC<=V",
                   help="a metric target (repeatable; all must hold)")
    p.add_argument("--vary", default="workload.arrival.rate", metavar="KEY",
                   help="the load key each placement's capacity search varies")
    p.add_argument("--objective", default="gpus",
                   help="cost of a placement: gpus (default), usd_per_hour, kwh (per 1k requests), "
                        "kw or module:Class")
    p.add_argument("--demand", type=float, metavar="V",
                   help="the load the fleet must carry (default: the config's --vary value); the "
                        "cheapest plan whose capacity reaches it is reported")
    p.add_argument("--plot", metavar="FILE.png", help="plot every plan's cost and capacity, and the front")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--rtol", type=float, default=0.02)
    p.add_argument("--max-requests", type=int, default=SteadyPolicy.max_requests)
    p.add_argument("--no-steady-check", action="store_true")
    _add_parallel_args(p)
    p.add_argument("--address", help="Ray cluster address (with --backend ray)")
    p.add_argument("--out", help="folder for placement.json and placement.csv")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_placement)


def cmd_placement(args) -> int:
    from servesim.studies.capacity import attainment_target, parse_target
    from servesim.studies.steady import SteadyPolicy

    targets = [parse_target(t) for t in args.target]
    if args.target_attainment is not None:
        targets.insert(0, attainment_target(args.target_attainment))
    if not targets:
        raise ConfigError("--target-attainment", "give --target-attainment A or --target METRIC<=V")
    if args.seeds < 1 or not 0 < args.rtol < 1 or args.max_requests < 1:
        raise ConfigError("--seeds", "--seeds >= 1, 0 < --rtol < 1 and --max-requests >= 1 expected")
    if not args.grid and not args.points:
        raise ConfigError("--grid", "give the placements with --grid KEY=V1,V2 or --points FILE")
    steady = None if args.no_steady_check else SteadyPolicy(max_requests=args.max_requests)
    return _grid_capacity(args, targets, steady)


def _grid_capacity(args, targets, steady) -> int:
    """A capacity search per point of the grid (or list), with each point's cost and capacity per
    unit of cost; table or JSON, and `--out` files."""
    from servesim.studies.placement import plan_placements, run_placements
    from servesim.studies.points import load_points, parse_grid

    if args.out:
        check_output_dir(args.out)
    if getattr(args, "plot", None):
        check_output_file(args.plot, "--plot")
    points = load_points(args.points) if args.points else None
    keys, tasks = plan_placements(args.config, parse_grid(args.grid), points, targets, args.vary,
                                  args.seeds, args.rtol, steady, args.objective,
                                  overrides_from_args(args))
    rows = run_placements(tasks, args.workers, args.backend, args.address)
    report = {"key": args.vary, "targets": [str(t) for t in targets], "objective": args.objective,
              "placements": rows, **_fleet_choice(args, rows)}
    if args.out:
        _write_placements(Path(args.out), report, keys)
    if args.json:
        print_json(report)
    else:
        print(_placement_table(rows, keys, args.vary))
        print(_fleet_text(report, rows))
    return EXIT_OK if any(r.get("capacity") is not None for r in rows) else EXIT_CHECK_FAILED


def _fleet_choice(args, rows) -> dict:
    """The cheapest plan carrying the demand and the cost/capacity Pareto front (plot on request)."""
    from servesim.config import load_config
    from servesim.studies.fleet import cheapest_plan, front, plan_frame, plot_front

    demand, plot = getattr(args, "demand", None), getattr(args, "plot", None)
    if demand is None:
        demand = _dotted(load_config(args.config, overrides_from_args(args)).model_dump(), args.vary)
    frame = plan_frame(rows)
    unit = next((r["unit"] for r in rows if r["status"] == "ok"), "unit")
    if plot and not frame.empty:
        plot_front(frame, plot, unit, args.vary)
    return {"demand": demand, "cheapest": cheapest_plan(frame, demand) if demand is not None else None,
            "pareto": front(frame).to_dict("records")}


def _dotted(tree, key: str):
    for part in key.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return None
        tree = tree[part]
    return float(tree) if isinstance(tree, (int, float)) else None


def _fleet_text(report: dict, rows) -> str:
    unit = next((r["unit"] for r in rows if r["status"] == "ok"), "unit")
    def plan(p):
        return (f"{p['label']}: {p['cost']:.4g} {unit}, capacity {p['capacity']:.4g}, "
                f"{p['gpus']:.0f} GPUs, ${_fmt(p['usd_per_hour'])}/h, "
                f"{_fmt(p['kwh_per_1k_requests'])} kWh/1k req, goodput {_fmt(p['goodput_rps'])} req/s")
    best = report["cheapest"]
    head = (f"cheapest plan carrying {report['key']}={report['demand']:g}: " + plan(best)) if best \
        else f"no plan carries {report['key']}={report['demand']} under the targets"
    lines = [head, f"Pareto front ({unit} vs capacity):"]
    return "\n".join([*lines, *("  " + plan(p) for p in report["pareto"])])


def _placement_table(rows, keys, vary) -> str:
    unit = next((r["unit"] for r in rows if r["status"] == "ok"), "unit")
    metrics = list(next((r["metrics"] for r in rows if r.get("metrics")), {}))
    header = [*keys, f"cost ({unit})", f"capacity ({vary})", f"per {unit}", *(f"{m} there" for m in metrics),
              "requests"]
    lines = [header]
    for r in rows:
        cells = [str(r["point"].get(k, "")) for k in keys]
        if r["status"] != "ok":
            lines.append([*cells, "", "failed", r["error"], *[""] * (len(metrics) + 1)])
            continue
        cap = "none met" if r["capacity"] is None else f"{r['capacity']:.4g}"
        per = "" if r["capacity"] is None else f"{r['per_unit']:.4g}"
        there = [_fmt(r["metrics"].get(m)) for m in metrics]
        lines.append([*cells, f"{r['cost']:g}", cap, per, *there, str(r.get("num_requests") or "")])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)


def _fmt(value) -> str:
    return "" if value is None or value != value else f"{value:.4g}"


def _write_placements(out: Path, report: dict, keys) -> None:
    import csv

    text = json.dumps(jsonable(report), indent=2) + "\n"

    def write_csv(path: Path) -> None:
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow([*keys, "status", "cost", "unit", "capacity", "per_unit", "error"])
            for r in report["placements"]:
                w.writerow([*(r["point"].get(k, "") for k in keys), r["status"], r.get("cost", ""),
                            r.get("unit", ""), r.get("capacity", ""), r.get("per_unit", ""), r["error"]])

    write_folder(out, {"placement.json": lambda p: p.write_text(text), "placement.csv": write_csv},
                 ("placement.json", "placement.csv"))


# -- compare --------------------------------------------------------------------------------------
def _register_compare(sub) -> None:
    p = sub.add_parser("compare", help="regression gate between two runs; or --paired A/B over seeds")
    p.add_argument("paths", nargs="+", metavar="BASE NEW",
                   help="two summary.json or sweep.csv files (or run/sweep folders); "
                        "with --paired, one CONFIG")
    p.add_argument("--rtol", type=float, default=0.02,
                   help="relative worsening allowed before a metric counts as regressed (default 0.02)")
    p.add_argument("--atol", type=float, default=0.0, help="absolute worsening allowed on top")
    p.add_argument("--metrics", help="comma-separated metrics (default: all with a better direction)")
    p.add_argument("--json", action="store_true")
    g = p.add_argument_group("paired comparison of two variants of one config over seeds")
    g.add_argument("--paired", action="store_true", help="treat the one path as a CONFIG")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="for both")
    g.add_argument("--set-a", action="append", default=[], metavar="KEY=VALUE", help="variant A")
    g.add_argument("--set-b", action="append", default=[], metavar="KEY=VALUE", help="variant B")
    g.add_argument("--seeds", type=int, default=5, help="seeds (pairs) to run (default 5)")
    g.add_argument("--confidence", type=float, default=0.95)
    _add_parallel_args(g)
    p.set_defaults(handler=cmd_compare)


def cmd_compare(args) -> int:
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    if args.paired:
        return _cmd_paired(args, metrics)
    if len(args.paths) != 2:
        raise ConfigError("compare", f"expected BASE and NEW, got {len(args.paths)} path(s)")
    if args.set or args.set_a or args.set_b:
        raise ConfigError("--set-a", "only with --paired")
    if args.rtol < 0 or args.atol < 0:
        raise ConfigError("--rtol", "--rtol and --atol must be >= 0")
    from servesim.studies.compare import (
        compare_summaries,
        compare_sweeps,
        format_table,
        load_run,
        report_json,
    )

    (kind_b, base), (kind_n, new) = load_run(args.paths[0]), load_run(args.paths[1])
    if kind_b != kind_n:
        raise ConfigError("compare", f"cannot compare a {kind_b} with a {kind_n}")
    lost: list[str] = []
    if kind_b == "summary":
        deltas = compare_summaries(base, new, args.rtol, args.atol, metrics)
    else:
        deltas, lost = compare_sweeps(base, new, args.rtol, args.atol, metrics)
    regressed = sum(d.verdict == "regressed" for d in deltas) + len(lost)
    if args.json:
        print_json(report_json(deltas, lost, args.rtol, args.atol))
    else:
        print(format_table(deltas, show_point=kind_b == "sweep"))
        for label in lost:
            print(f"point missing or failed in NEW: {label}")
        verdict = f"{regressed} regression(s)" if regressed else "no regressions"
        print(f"{verdict} beyond rtol={args.rtol:g}, atol={args.atol:g} ({len(deltas)} compared)")
    return EXIT_CHECK_FAILED if regressed else EXIT_OK


def _cmd_paired(args, metrics) -> int:
    from servesim.studies.paired import DEFAULT_METRICS, format_paired, paired_compare

    if len(args.paths) != 1:
        raise ConfigError("--paired", f"expected one CONFIG, got {len(args.paths)} path(s)")
    if not args.set_a and not args.set_b:
        raise ConfigError("--set-b", "give the variants with --set-a and/or --set-b KEY=VALUE")
    from servesim.config import load_config

    base = load_config(args.paths[0], dict(parse_assignment(a) for a in args.set))
    a = dict(parse_assignment(x) for x in args.set_a)
    b = dict(parse_assignment(x) for x in args.set_b)
    result = paired_compare(base, a, b, args.seeds, metrics or DEFAULT_METRICS, args.confidence,
                            args.workers, args.backend, progress=True)
    if args.json:
        print_json({"a": a, "b": b, **result.to_dict()})
    else:
        print(f"A: {_fmt_overrides(a)}\nB: {_fmt_overrides(b)}")
        print(format_paired(result))
    worse = any(s.verdict == "B worse" for s in result.stats)
    return EXIT_CHECK_FAILED if worse else EXIT_OK


def _fmt_overrides(o: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in o.items()) or "(the config as is)"


# -- timeline -------------------------------------------------------------------------------------
def _register_timeline(sub) -> None:
    from servesim.studies.timeline import MAX_REQUESTS, MAX_STEPS

    p = sub.add_parser("timeline", help="run a config and write a Chrome/Perfetto trace.json")
    add_config_args(p)
    p.add_argument("--out", required=True, help="trace file to write (e.g. trace.json)")
    p.add_argument("--max-steps", type=int, default=MAX_STEPS, help=f"default {MAX_STEPS}")
    p.add_argument("--max-requests", type=int, default=MAX_REQUESTS, help=f"default {MAX_REQUESTS}")
    p.set_defaults(handler=cmd_timeline)


def cmd_timeline(args) -> int:
    from servesim.cli.common import load_from_args, simulate_with_progress
    from servesim.studies.timeline import write_chrome_trace

    for flag, value in (("--max-steps", args.max_steps), ("--max-requests", args.max_requests)):
        if value < 0:
            raise ConfigError(flag, f"must be >= 0, got {value}")
    check_output_file(args.out)
    result = simulate_with_progress(load_from_args(args))
    path = write_chrome_trace(result, args.out, args.max_steps, args.max_requests)
    kept_steps = min(len(result.steps), args.max_steps)
    kept_reqs = min(len(result.requests), args.max_requests)
    print(f"wrote {path} ({kept_steps} of {len(result.steps)} step rows, {kept_reqs} of "
          f"{len(result.requests)} requests); open it at https://ui.perfetto.dev")
    return EXIT_OK
