"""`servesim costmodel calibrate --throughput CSV` and `servesim costmodel check --throughput CSV`.

Both replay published end-to-end results (the Throughput CSV, docs/cost-model.md section 9) in the
simulator: `calibrate` fits one device family's profile to its `fit` rows, `check` prices every row
with the shipped profiles (or `--profile`) and reports the error per row and per vendor.
"""

from __future__ import annotations

import numpy as np

from servesim.cli.common import print_json

EXIT_OK = 0
THROUGHPUT_FIT = (
    "gemm_compute_eff",
    "attn_prefill_eff",
    "attn_decode_memory_eff",
    "comm_bw_eff",
    "comm_latency_s",
    "step_overhead_s",
)
"""What end-to-end rows can tell apart: large-GEMM rate, prefill attention, HBM streaming (weights and
KV cache alike, `tie_efficiencies`), collectives and a fixed cost per step. The shapes of the
efficiency curves (pad rows, launch overheads) stay as the start profile has them."""
THROUGHPUT_PRIOR = 0.02
"""Pull towards the start profile, per log-parameter: a handful of rows must not move what they
cannot see."""
ROBUST_SCALE = 0.15
"""Rows off by more than ~15% count linearly: one badly described setup cannot drag a family."""


def add_arguments(cal, check) -> None:
    """Options of `calibrate` (the throughput ones) and of the `check` sub-command."""
    cal.add_argument(
        "--throughput", metavar="CSV",
        help="published end-to-end throughput rows (docs/cost-model.md section 9); fits their family",
    )
    cal.add_argument("--family", help="fit the rows of this device family (default: the rows' only one)")
    check.add_argument("--throughput", required=True, metavar="CSV", help="published throughput rows")
    check.add_argument("--profile", help="profile YAML or shipped name for all rows (default: each family's)")
    check.add_argument("--family", help="only rows of this device family")
    check.add_argument("--split", choices=("check", "fit", "engine", "all"), default="all",
                       help="which rows to price (default: all, each labelled)")
    check.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    check.add_argument("--json", action="store_true")
    check.set_defaults(handler=cmd_check)


# -- check --------------------------------------------------------------------------------------------
def cmd_check(args) -> int:
    from servesim.cost.profile import resolve_profile
    from servesim.cost.published import read_published
    from servesim.studies.throughput import (
        error_table,
        family_of,
        predicted_throughput,
        record_trace,
        summarize_errors,
    )

    rows = _select(read_published(args.throughput), args.family, args.split, "--family")
    predicted = []
    for row in rows:
        profile = resolve_profile(family_of(row), args.profile, key="--profile")
        predicted.append(predicted_throughput(row, record_trace(row), profile))
    table = error_table(rows, np.array(predicted))
    out = {"rows": table, "summary": {s: summarize_errors([t for t in table if t["split"] == s] or table)
                                      for s in ("check", "fit")}}
    if any(t["split"] == "engine" for t in table):
        out["summary"]["engine"] = summarize_errors([t for t in table if t["split"] == "engine"])
    out["summary"]["all"] = summarize_errors(table)
    if args.json:
        print_json(out)
    else:
        print(format_check(out, args.markdown))
    return EXIT_OK


def _select(rows, family: str | None, split: str, key: str):
    from servesim.core.errors import ConfigError
    from servesim.studies.throughput import family_of

    families = sorted({family_of(r) for r in rows})
    if family is not None and family not in families:
        raise ConfigError(key, f"no rows of family {family!r}; the file has {', '.join(families)}")
    chosen = [r for r in rows if (family is None or family_of(r) == family)
              and (split == "all" or r.split == split)]
    if not chosen:
        raise ConfigError(key, f"no {split} rows of family {family!r}")
    return chosen


def format_check(out: dict, markdown: bool) -> str:
    head = ["row", "device", "model", "split", "measured tok/s", "predicted tok/s", "error"]
    lines = []
    if markdown:
        lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for t in out["rows"]:
        cells = [t["id"], t["device"], t["model"], t["split"], f"{t['measured']:,.0f}",
                 f"{t['predicted']:,.0f}", f"{t['error_pct']:+.1f}%"]
        lines.append("| " + " | ".join(cells) + " |" if markdown else
                     f"{cells[0]:52} {cells[3]:6} {cells[4]:>12} {cells[5]:>12} {cells[6]:>8}")
    lines.append("")
    lines.append(f"{'rows':28}{'n':>5}{'median |err|':>14}{'worst |err|':>13}")
    for split, groups in out["summary"].items():
        for group, s in groups.items():
            lines.append(f"{split + ' ' + group:28}{s['rows']:>5}{s['median_abs_pct']:>13.1f}%"
                         f"{s['max_abs_pct']:>12.1f}%")
    return "\n".join(lines)


# -- calibrate ----------------------------------------------------------------------------------------
def cmd_calibrate_throughput(args) -> int:
    from servesim.core.files import check_output_file
    from servesim.cost.calibrate import fit
    from servesim.cost.profile import FIT_PARAMETERS, CostProfile, resolve_profile, save_profile
    from servesim.cost.published import read_published
    from servesim.studies.throughput import (
        ThroughputData,
        error_table,
        family_of,
        summarize_errors,
        tie_efficiencies,
    )

    check_output_file(args.out)
    all_rows = read_published(args.throughput)
    family = args.family or _only_family(all_rows)
    fit_rows = _select(all_rows, family, "fit", "--family")
    check_rows = [r for r in all_rows if family_of(r) == family and r.split == "check"]
    if args.start == "builtin":
        start = CostProfile(source="built-in defaults")
    else:
        start = resolve_profile(family, args.start, key="--start")
    params = _params(args.params, FIT_PARAMETERS)
    data = ThroughputData(fit_rows)
    data.robust_scale = ROBUST_SCALE
    result = fit([data], start, params or THROUGHPUT_FIT, prior_weight=THROUGHPUT_PRIOR)
    profile = tie_efficiencies(result.profile).with_values(
        source=f"{family}: servesim costmodel calibrate --throughput on {len(fit_rows)} published rows"
    )
    reports = {"before": error_table(fit_rows, data.predict(start))}
    reports["fit"] = error_table(fit_rows, data.predict(profile))
    if check_rows:
        checks = ThroughputData(check_rows)
        reports["check"] = error_table(check_rows, checks.predict(profile))
    summary = {k: summarize_errors(v)["all"] for k, v in reports.items()}
    save_profile(profile, args.out, _header(family, fit_rows, summary))
    out = {"family": family, "profile": profile.to_dict()["parameters"], "fitted": result.fitted,
           "summary": summary,
           "rows": reports}
    if args.json:
        print_json(out)
    else:
        print(_format_calibration(out, args.out))
    return EXIT_OK


def _only_family(rows) -> str:
    from servesim.core.errors import ConfigError
    from servesim.studies.throughput import family_of

    families = sorted({family_of(r) for r in rows if r.split == "fit"})
    if len(families) != 1:
        raise ConfigError("--family", f"the fit rows span families {', '.join(families)}; name one")
    return families[0]


def _params(text, valid):
    from servesim.cli.costmodel import _parse_params

    return _parse_params(text, valid)


def _header(family: str, rows, summary: dict) -> str:
    lines = [f"{family} cost profile: servesim costmodel calibrate --throughput (do not edit by hand)",
             f"fitted on {len(rows)} published rows (split=fit); |error| median / worst:"]
    for name, s in summary.items():
        lines.append(f"  {name}: {s['rows']} rows, {s['median_abs_pct']:.1f}% / {s['max_abs_pct']:.1f}%")
    lines.append("sources:")
    for source in sorted({r.source for r in rows}):
        lines.append(f"  {source}")
    return "\n".join(lines)


def _format_calibration(out: dict, path: str) -> str:
    lines = [f"wrote {path} ({out['family']})", f"{'rows':10}{'n':>5}{'median |err|':>14}{'worst |err|':>13}"]
    for name, s in out["summary"].items():
        lines.append(f"{name:10}{s['rows']:>5}{s['median_abs_pct']:>13.1f}%{s['max_abs_pct']:>12.1f}%")
    lines.append("parameters:")
    for k in out["fitted"]:
        lines.append(f"  {k:32} {out['profile'][k]:.6g}")
    return "\n".join(lines)
