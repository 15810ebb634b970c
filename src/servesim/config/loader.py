"""YAML loading, dotted `--set` overrides, and pydantic errors turned into one-line key errors."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping

import yaml
from pydantic import ValidationError

from servesim.config.schema import SimConfig
from servesim.core.errors import ArgumentError, ConfigError, InputFileError
from servesim.core.files import read_yaml as read_yaml_file
from servesim.core.files import yaml_loads
from servesim.core.validation import config_error, shown_key


def load_config(
    source: str | Path | Mapping[str, Any] | SimConfig,
    overrides: Mapping[str, Any] | None = None,
) -> SimConfig:
    """A validated config from a YAML path, a dict or a config, with dotted-key overrides applied.

    Override values that are strings are parsed as YAML (`--set engine.max_num_seqs=64` gives an int).
    """
    base_dir = Path.cwd()
    if isinstance(source, SimConfig):
        data = source.model_dump(mode="python")
        base_dir = source.base_dir
    elif isinstance(source, Mapping):
        data = copy.deepcopy(dict(source))  # overrides must not write into the caller's dicts
    else:
        path = Path(source)
        data = read_yaml(path)
        base_dir = path.resolve().parent
    replaced = {}
    for key, value in (overrides or {}).items():
        where = set_dotted(data, key, parse_value(value))
        if where is not None:
            replaced[where] = key
    try:
        config = validate(data)
    except ConfigError as exc:
        # a scalar that `--set` turned into a mapping, where the schema takes no mapping
        where = next((w for w in replaced if exc.key == w or exc.key.startswith(w + ".")), None)
        if where is None:
            raise
        raise ConfigError(where, f"is a value, cannot set {replaced[where]}") from None
    config._base_dir = base_dir
    return config


def read_yaml(path: Path) -> dict:
    data = read_yaml_file(path, "config")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputFileError(path, "expected a mapping of config keys at the top level")
    unknown = [key for key in data if key not in SimConfig.model_fields]
    if unknown:  # named with the file: the key alone may be empty, unprintable or not text at all
        raise InputFileError(path, f"{shown_key(unknown[0])}: unknown key at the top level; expected one "
                             f"of {', '.join(SimConfig.model_fields)}")
    return data



def parse_value(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return yaml_loads(value)
    except (yaml.YAMLError, RecursionError):
        return value


def parse_assignment(text: str) -> tuple[str, Any]:
    """`KEY=VALUE` from the command line."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ArgumentError("set", f"expected KEY=VALUE, got {text!r}")
    return key.strip(), parse_value(value)


SCALAR_CARRY = {"model": "base", "hardware": "base", "prefill_hardware": "base",
                "decode_hardware": "base", "predictor": "name", "scheduler": "name",
                "batching": "name", "router": "name", "decode_router": "name", "format": "name",
                "cost.model": "name"}
"""Keys (or dotted paths) whose value may be a name or a mapping: a name becomes this key of the
mapping that `--set KEY.sub=...` makes of it (`model: llama3-8b` -> `model: {base: llama3-8b}`;
a component, `engine.predictor: noisy_oracle` -> `{name: noisy_oracle, sigma: ...}`)."""


def set_dotted(data: dict, key: str, value: Any) -> str | None:
    """Set `a.b.c` in nested dicts, creating missing blocks (optional sections appear as needed).

    A number indexes a list (`cluster.pools.0.tp`). A scalar on the path becomes a mapping: a
    catalog name keeps its place as `base` (model, hardware) or `name` (predictor); any other
    scalar is replaced. Returns the dotted path of a replaced scalar (None if none was).
    """
    parts = key.split(".")
    if "" in parts:
        raise ConfigError(shown_key(key), "expected a dotted config key (a part is empty)")
    node: Any = data
    replaced = None
    for i, part in enumerate(parts[:-1]):
        where = ".".join(parts[: i + 1])
        if isinstance(node, list):
            node = node[_index(node, part, where)]
            continue
        child = node.get(part)
        if isinstance(child, (dict, list)):
            node = child
            continue
        carry = SCALAR_CARRY.get(where, SCALAR_CARRY.get(part))
        if child is not None:
            replaced = replaced or where
        child = node[part] = {carry: child} if isinstance(child, str) and carry else {}
        node = child
    last = parts[-1]
    if isinstance(node, list):
        node[_index(node, last, key)] = value
    else:
        node[last] = value
    return replaced


def _index(items: list, part: str, where: str) -> int:
    if not part.isdigit() or int(part) >= len(items):
        raise ConfigError(where, f"expected an index below {len(items)} into the list")
    return int(part)


def validate(data: dict) -> SimConfig:
    try:
        return SimConfig.model_validate(data)
    except ValidationError as exc:
        raise config_error(exc) from None
