"""Argument helpers shared by commands."""

from __future__ import annotations

import json

from servesim.cli import resume_collection
from servesim.config import load_config, parse_assignment
from servesim.core.files import jsonable


def add_config_args(p) -> None:
    p.add_argument("config", help="config YAML")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key"
    )
    p.add_argument("--seed", type=int, help="override the seed")


def overrides_from_args(args) -> dict:
    overrides = dict(parse_assignment(a) for a in args.set)
    if getattr(args, "seed", None) is not None:
        overrides["seed"] = args.seed
    return overrides


def load_from_args(args):
    return load_config(args.config, overrides_from_args(args))


def print_json(data) -> None:
    print(json.dumps(jsonable(data), indent=2))


def simulate_with_progress(config):
    """`simulate(config)`, with a progress bar on a terminal when the run takes a few seconds."""
    from servesim.build import build
    from servesim.progress import SimulationProgress
    from servesim.simulation import run

    built = build(config)
    resume_collection()
    last = float(built.table.arrival_s.max()) if len(built.table) else 0.0
    bar = SimulationProgress(last)
    try:
        return run(built, after_step=bar if bar.active else None)
    finally:
        bar.close()
