"""`servesim trace info | generate | plot`: look at a trace, or at what a config's workload produces."""

from __future__ import annotations

import math
from pathlib import Path

from servesim.cli.common import add_config_args, load_from_args, print_json
from servesim.core.files import check_output_file, write_file

EXIT_OK = 0
CONFIG_SUFFIXES = (".yaml", ".yml")


def register(sub) -> None:
    trace = sub.add_parser("trace", help="inspect, generate and plot workloads")
    cmds = trace.add_subparsers(dest="trace_command", required=True)  # same Parser class: errors exit 2
    _register_info(cmds)
    _register_generate(cmds)
    _register_plot(cmds)


def _add_read_args(p) -> None:
    p.add_argument("--format", help="trace format (default: detected from the file)")
    p.add_argument("--skip-bad-rows", action="store_true", help="drop malformed rows and count them")
    p.add_argument(
        "--seed", type=int, help="seed: of a config, or for formats that synthesise requests (default 0)"
    )
    p.add_argument("--start", type=float, default=0.0, metavar="S", help="window start, s on the trace clock")
    p.add_argument("--duration", type=float, metavar="S", help="window length, s on the trace clock")
    p.add_argument(
        "--block-size", type=int, metavar="TOKENS", help="tokens per prefix-hash block in the file"
    )


def _register_info(cmds) -> None:
    p = cmds.add_parser("info", help="rows, span, rate, burstiness, length percentiles, prefix reuse")
    p.add_argument("path", help="trace file (or ServeGen folder)")
    _add_read_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(handler=cmd_info)


def _register_generate(cmds) -> None:
    p = cmds.add_parser("generate", help="write the requests a config's workload produces")
    add_config_args(p)
    p.add_argument("--out", required=True, help="CSV file to write")
    p.add_argument("--json", action="store_true", help="print the statistics of what was written as JSON")
    p.set_defaults(handler=cmd_generate)


def _register_plot(cmds) -> None:
    p = cmds.add_parser("plot", help="arrival rate over time and length CDFs, as a PNG")
    p.add_argument("source", help="trace file, ServeGen folder, or config YAML")
    _add_read_args(p)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--bin", type=float, metavar="S", help="rate bin width, s (default: about 120 bins)")
    p.set_defaults(handler=cmd_plot)


# -- handlers -------------------------------------------------------------------------------------


def cmd_info(args) -> int:
    from servesim.workload.stats import trace_stats

    data = read_from_args(args)
    info = {"path": args.path, "format": data.format, **trace_stats(data.table)}
    info["skipped_rows"] = dict(data.report.skipped)
    info["dropped_rows"] = dict(data.report.dropped)
    info["warnings"] = list(data.report.warnings)
    if args.json:
        print_json(info)
    else:
        print(format_info(info))
    return EXIT_OK


def cmd_generate(args) -> int:
    from servesim.workload.stats import trace_stats

    check_output_file(args.out)
    table = table_of_config(args)
    frame = table.to_frame()
    write_file(args.out, lambda path: frame.to_csv(path, index=False))
    if args.json:
        print_json({"out": args.out, **trace_stats(table)})
    else:
        print(f"wrote {len(table)} requests to {args.out} (columns: {', '.join(frame.columns)})")
    return EXIT_OK


def cmd_plot(args) -> int:
    from servesim.studies.plots import workload_figure

    check_output_file(args.out)
    if Path(args.source).suffix in CONFIG_SUFFIXES:
        args.config = args.source
        table, title = table_of_config(args), f"workload of {args.source}"
    else:
        data = read_from_args(args, path=args.source)
        table, title = data.table, f"{args.source} ({data.format})"
    figure = workload_figure(table, title, args.bin)
    out = write_file(args.out, lambda path: figure.savefig(path, dpi=110))
    print(f"wrote {out}")
    return EXIT_OK


# -- helpers --------------------------------------------------------------------------------------


def read_from_args(args, path: str | None = None):
    from servesim.cli import UsageError
    from servesim.config.workload import TraceConfig
    from servesim.core.rng import stream
    from servesim.workload.readers import ReadOptions, read_trace
    from servesim.workload.replay import cut_window

    if args.duration is not None and args.duration <= 0:
        raise UsageError(f"--duration: must be > 0, got {args.duration}")
    if args.start < 0:
        raise UsageError(f"--start: must be >= 0, got {args.start}")
    end = args.start + args.duration if args.duration is not None else math.inf
    options = ReadOptions(
        skip_bad_rows=args.skip_bad_rows, block_size=args.block_size, start_s=args.start, end_s=end
    )
    data = read_trace(
        path or args.path, args.format, options, stream(args.seed or 0, "workload"), format_key="--format"
    )
    if data.table.timed and (args.start or args.duration is not None):
        window = TraceConfig(path=str(path or args.path), start_s=args.start, duration_s=args.duration)
        data.table = cut_window(data.table, window, "--start")
    return data


def table_of_config(args):
    """The config's workload, drawn exactly as `servesim run` draws it."""
    from servesim.core.rng import stream
    from servesim.workload import build_requests

    config = load_from_args(args)
    return build_requests(config.workload, stream(config.seed, "workload"), config.resolve_path)


def format_info(info: dict) -> str:
    def num(v, fmt):
        return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)

    lines = [
        f"{info['path']} ({info['format']})",
        f"rows              {info['rows']}",
        f"span_s            {num(info['span_s'], '.3f')}",
        f"rate_per_s        {num(info['rate_per_s'], '.4f')}",
        f"interarrival_cv   {num(info['interarrival_cv'], '.4f')}",
        f"{'tokens':<18}{'mean':>10}{'p50':>10}{'p90':>10}{'p99':>10}{'max':>10}",
    ]
    for key in ("prompt_tokens", "output_tokens"):
        s = info[key]
        lines.append(
            f"{key:<18}"
            + "".join(f"{s[k]:>10.1f}" for k in ("mean", "p50", "p90", "p99"))
            + f"{s['max']:>10d}"
        )
    if "prefix_block_reuse" in info:
        reuse, block = info["prefix_block_reuse"], info["hash_block_size"]
        lines.append(f"prefix_block_reuse {reuse:.4f} (blocks of {block} tokens)")
    if "sessions" in info:
        lines.append(f"sessions          {info['sessions']}")
    for key, label in (("skipped_rows", "skipped bad rows"), ("dropped_rows", "dropped rows")):
        if info[key]:
            counts = ", ".join(f"{k} {v}" for k, v in sorted(info[key].items()))
            lines.append(f"{label}: {sum(info[key].values())} ({counts})")
    lines += [f"warning: {w}" for w in info["warnings"]]
    return "\n".join(lines)
