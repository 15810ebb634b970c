"""`servesim plot cdf | attainment | latency-throughput | timeline | cost | fleet`: one figure to a
file."""

from __future__ import annotations

from pathlib import Path

from servesim.cli.common import add_config_args, load_from_args
from servesim.core.errors import ConfigError
from servesim.core.files import check_output_file, write_file

FORMATS = (".png", ".svg", ".pdf")


def register(sub) -> None:
    p = sub.add_parser("plot", help="draw a figure (PNG/SVG/PDF) from runs, sweeps or a config")
    kinds = p.add_subparsers(dest="kind", required=True, parser_class=type(p))

    cdf = _kind(kinds, "cdf", "latency CDFs of several runs (run folders or requests.csv)", cmd_cdf)
    cdf.add_argument("runs", nargs="+", metavar="RUN")
    cdf.add_argument("--labels", help="comma-separated labels (default: folder names)")
    cdf.add_argument("--metrics", default="ttft,tpot,e2e", help="from ttft,tpot,e2e,tbt_max")
    for slo in ("ttft", "tpot"):
        cdf.add_argument(f"--slo-{slo}", type=float, help=f"draw the {slo.upper()} objective (s)")

    att = _sweep_kind(kinds, "attainment", "SLO attainment (or any metric) vs load", cmd_attainment)
    att.add_argument("--x", default="workload.arrival.rate")
    att.add_argument("--y", default="slo.attainment")
    att.add_argument("--target", type=float, help="draw a horizontal target line")

    lt = _sweep_kind(kinds, "latency-throughput", "latency vs throughput", cmd_latency_throughput)
    lt.add_argument("--latency", default="latency.ttft.p99")
    lt.add_argument("--throughput", default="throughput.output_tokens_per_s")
    lt.add_argument("--order-by", default="workload.arrival.rate", help="the load key joining points")

    for name, help_, handler in (
        ("timeline", "run a config; waiting, batch, KV and busy share per instance over time",
         cmd_timeline),
        ("cost", "the config's cost model: where step time goes", cmd_cost),
    ):
        add_config_args(_kind(kinds, name, help_, handler))

    fleet = _kind(kinds, "fleet", "instances and load over time of runs (elastic or fixed)", cmd_fleet)
    fleet.add_argument("runs", nargs="+", metavar="RUN", help="`servesim run` output folders")
    fleet.add_argument("--labels", help="comma-separated labels (default: folder names)")


def _kind(kinds, name: str, help_: str, handler):
    """A figure kind: its parser, with `--out` and its handler."""
    p = kinds.add_parser(name, help=help_)
    p.add_argument("--out", required=True, help="image file (.png, .svg or .pdf)")
    p.set_defaults(handler=handler)
    return p


def _sweep_kind(kinds, name: str, help_: str, handler):
    p = _kind(kinds, name, f"{help_} from a sweep", handler)
    p.add_argument("sweep", metavar="SWEEP")
    p.add_argument("--hue", help="a sweep key: one line per value")
    return p


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


def cmd_fleet(args) -> int:
    _check_out(args.out)
    from servesim.studies.fleet_plot import fleet_figure

    labels = args.labels.split(",") if args.labels else [Path(r).name for r in args.runs]
    if len(labels) != len(args.runs):
        raise ConfigError("--labels", f"{len(labels)} labels for {len(args.runs)} runs")
    return _save(fleet_figure(dict(zip(labels, args.runs))), args.out)


def cmd_cost(args) -> int:
    _check_out(args.out)
    from servesim.studies.plots import cost_breakdown

    return _save(cost_breakdown(load_from_args(args)), args.out)


def _run_label(path: str) -> str:
    p = Path(path)
    return p.parent.name if p.name == "requests.csv" else p.name
