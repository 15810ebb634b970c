"""Argument helpers shared by commands."""

from __future__ import annotations

import json
import math
import re

from servesim.config import load_config, parse_assignment
from servesim.core.errors import ArgumentError


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
    print(json.dumps(_clean(data), indent=2))


def _clean(v):
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def in_cli_words(exc: Exception, args) -> str:
    """An error message in the command line's words: a library argument that the command sets
    from a flag (`seeds`, `low`) is named by the flag (`--seeds`, `--low`)."""
    if not isinstance(exc, ArgumentError) or args is None:
        return str(exc)
    dests = vars(args)

    def flag(name: str) -> str:
        return "--" + name.replace("_", "-") if name in dests else name

    message = str(exc)[len(exc.key) + 2 :] if exc.key else str(exc)
    message = re.sub(r"`(\w+)`", lambda m: flag(m.group(1)) if m.group(1) in dests else m.group(0), message)
    return f"{flag(exc.key)}: {message}" if exc.key else message
