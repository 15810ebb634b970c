"""`servesim plot cdf | attainment | latency-throughput | timeline | cost`: one figure to a file."""

from __future__ import annotations

from pathlib import Path

from servesim.cli.common import add_config_args, load_from_args
from servesim.core.errors import ConfigError
from servesim.core.files import check_output_file, write_file

FORMATS = (".png", ".svg", ".pdf")


def register(sub) -> None:
    p = sub.add_parser("plot", help="draw a figure (PNG/SVG/PDF) from runs, sweeps or a config")
    kinds = p.add_subparsers(dest="kind", required=True, parser_class=type(p))

    cdf = kinds.add_parser("cdf", help="latency CDFs of several runs (run folders or requests.csv)")
    cdf.add_argument("runs", nargs="+", metavar="RUN")
    cdf.add_argument("--labels", help="comma-separated labels (default: folder names)")
    cdf.add_argument("--metrics", default="ttft,tpot,e2e", help="from ttft,tpot,e2e,tbt_max")
    cdf.add_argument("--slo-ttft", type=float, help="draw the TTFT objective (s)")
    cdf.add_argument("--slo-tpot", type=float, help="draw the TPOT objective (s)")
    _out(cdf)
    cdf.set_defaults(handler=cmd_cdf)

    att = kinds.add_parser("attainment", help="SLO attainment (or any metric) vs load from a sweep")
    att.add_argument("sweep", metavar="SWEEP")
    att.add_argument("--x", default="workload.arrival.rate")
    att.add_argument("--y", default="slo.attainment")
    att.add_argument("--hue", help="a sweep key: one line per value")
    att.add_argument("--target", type=float, help="draw a horizontal target line")
    _out(att)
    att.set_defaults(handler=cmd_attainment)

    lt = kinds.add_parser("latency-throughput", help="latency vs throughput from a sweep")
    lt.add_argument("sweep", metavar="SWEEP")
    lt.add_argument("--latency", default="latency.ttft.p99")
    lt.add_argument("--throughput", default="throughput.output_tokens_per_s")
    lt.add_argument("--hue", help="a sweep key: one line per value")
    lt.add_argument("--order-by", default="workload.arrival.rate", help="the load key joining points")
    _out(lt)
    lt.set_defaults(handler=cmd_latency_throughput)

    tl = kinds.add_parser("timeline", help="run a config; queue, batch and KV per instance over time")
    add_config_args(tl)
    _out(tl)
    tl.set_defaults(handler=cmd_timeline)

    cost = kinds.add_parser("cost", help="the config's cost model: where step time goes")
    add_config_args(cost)
    _out(cost)
    cost.set_defaults(handler=cmd_cost)


def _out(p) -> None:
    p.add_argument("--out", required=True, help="image file (.png, .svg or .pdf)")


def _check_out(out: str) -> None:
    if Path(out).suffix.lower() not in FORMATS:
        raise ConfigError("--out", f"expected a .png, .svg or .pdf file, got {out!r}")
    check_output_file(out)


def _save(fig, out: str) -> int:
    fmt = Path(out).suffix.lower().lstrip(".")
    path = write_file(out, lambda p: fig.savefig(p, dpi=120, format=fmt))
    print(f"wrote {path}")
    return 0


def cmd_cdf(args) -> int:
    _check_out(args.out)
    from servesim.studies.plots import latency_cdfs

    labels = args.labels.split(",") if args.labels else [_run_label(r) for r in args.runs]
    if len(labels) != len(args.runs):
        raise ConfigError("--labels", f"{len(labels)} labels for {len(args.runs)} runs")
    slo = {k: v for k, v in (("ttft", args.slo_ttft), ("tpot", args.slo_tpot)) if v is not None}
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    return _save(latency_cdfs(dict(zip(labels, args.runs)), metrics, slo), args.out)


def cmd_attainment(args) -> int:
    _check_out(args.out)
    from servesim.studies.plots import attainment_vs_rate

    return _save(attainment_vs_rate(args.sweep, args.x, args.y, args.hue, args.target), args.out)


def cmd_latency_throughput(args) -> int:
    _check_out(args.out)
    from servesim.studies.plots import latency_vs_throughput

    fig = latency_vs_throughput(args.sweep, args.latency, args.throughput, args.hue, args.order_by)
    return _save(fig, args.out)


def cmd_timeline(args) -> int:
    _check_out(args.out)
    from servesim.simulation import simulate
    from servesim.studies.plots import instance_timeline

    return _save(instance_timeline(simulate(load_from_args(args))), args.out)


def cmd_cost(args) -> int:
    _check_out(args.out)
    from servesim.studies.plots import cost_breakdown

    return _save(cost_breakdown(load_from_args(args)), args.out)


def _run_label(path: str) -> str:
    p = Path(path)
    return p.parent.name if p.name == "requests.csv" else p.name
