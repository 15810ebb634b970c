"""Study points: a grid (cross product of `KEY=V1,V2` axes) or a list from YAML, plus seeds.

A point is a dict of dotted config overrides. Its identity in a sweep CSV is the tuple of its values
formatted by `format_value`, which round-trips through the CSV exactly.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from servesim.config.loader import parse_value
from servesim.config.schema import SimConfig
from servesim.core.errors import ArgumentError, InputFileError
from servesim.core.files import read_yaml


def parse_grid(specs: Sequence[str]) -> dict[str, list]:
    """`["engine.scheduler=fcfs,srtf", "workload.arrival.rate=4,8"]` -> {key: [values]}.

    Values parse as YAML (`8` is an int, `8.0` a float). A value cannot contain a comma.
    """
    grid: dict[str, list] = {}
    for spec in specs:
        key, sep, values = spec.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ArgumentError("grid", f"expected KEY=V1,V2,..., got {spec!r}")
        items = [v.strip() for v in values.split(",")]
        if not values.strip() or any(not v for v in items):
            raise ArgumentError("grid", f"{key}: empty value in {spec!r}")
        if key in grid:
            raise ArgumentError("grid", f"{key} given twice")
        grid[key] = _unique([parse_value(v) for v in items], key)
    return grid


def load_points(path: str | Path) -> list[dict]:
    """A YAML list of mappings; nested mappings are flattened to dotted keys."""
    path = Path(path)
    data = read_yaml(path, "points file")
    if isinstance(data, Mapping) and "points" in data:
        data = data["points"]
    if not isinstance(data, list) or not data:
        raise InputFileError(path, "expected a non-empty list of points (mappings of config keys)")
    points = []
    for i, item in enumerate(data):
        if not isinstance(item, Mapping) or not item:
            raise InputFileError(path, f"point {i + 1}: expected a non-empty mapping of config keys")
        point = _dotted(item)
        bad = next((k for k in point if "" in k.split(".")), None)
        unknown = next((k for k in point if k.split(".")[0] not in SimConfig.model_fields), None)
        if unknown is not None and bad is None:  # named with the file, as a config file's own
            raise InputFileError(path, f"point {i + 1}: {unknown!r}: unknown key at the top level")
        if bad is not None:
            raise InputFileError(
                path, f"point {i + 1}: {bad!r}: expected a dotted config key (a part is empty)")
        points.append(point)
    return points


def expand(
    grid: Mapping[str, list] | None = None,
    points: Sequence[Mapping[str, Any]] | None = None,
    seeds: Sequence[int] | None = None,
) -> tuple[list[str], list[dict]]:
    """The keys (columns) and the points: listed points x grid cross product x seeds.

    Order is deterministic: points in file order, then the grid with its last axis varying fastest,
    then seeds. An empty grid with no points is an error.
    """
    grid = dict(grid or {})
    if seeds is not None:
        if "seed" in grid:
            raise ArgumentError("seeds", "give seeds as a count or as a grid axis `seed`, not both")
        grid["seed"] = list(seeds)
    if not grid and not points:
        raise ArgumentError("grid", "empty grid: give at least one grid axis (KEY=V1,V2) or a points file")
    base = [dict(p) for p in points] if points else [{}]
    keys: list[str] = []
    for p in base:
        keys += [k for k in p if k not in keys]
    keys += [k for k in grid if k not in keys]
    combos = list(itertools.product(*grid.values()))
    out = [{**p, **dict(zip(grid, combo))} for p in base for combo in combos]
    seen = set()
    for point in out:
        pid = point_id(point, keys)
        if pid in seen:
            raise ArgumentError("grid", f"point {format_point(point)} appears twice")
        seen.add(pid)
    return keys, out


def format_value(value: Any) -> str:
    """A point's value as its CSV cell: strings as-is, everything else as JSON (`8.0`, `true`)."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def point_id(point: Mapping[str, Any], keys: Sequence[str]) -> tuple[str, ...]:
    """Identity of a point among `keys`; a key the point leaves at the config's value is ''."""
    return tuple(format_value(point[k]) if k in point else "" for k in keys)


def format_point(point: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={format_value(v)}" for k, v in point.items())


def _unique(values: list, key: str) -> list:
    formatted = [format_value(v) for v in values]
    if len(set(formatted)) != len(formatted):
        raise ArgumentError("grid", f"{key}: a value is repeated")
    return values


def _dotted(data: Mapping, prefix: str = "") -> dict:
    out = {}
    for k, v in data.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(_dotted(v, name + "."))
        else:
            out[name] = v
    return out
