"""Pydantic's errors as one-line key errors: the one translator, for the config and for every
component's `Params`."""

from __future__ import annotations

from pydantic import ValidationError

from servesim.core.errors import ConfigError


def config_error(exc: ValidationError, prefix: str = "") -> ConfigError:
    """A pydantic error as one line naming the dotted key (under `prefix`, e.g. `engine.srtf`)."""
    err = exc.errors()[0]
    loc = [shown_key(p) for p in err["loc"] if not _is_union_tag(p)]
    key = ".".join([prefix, *loc] if prefix else loc)
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif "input" in err and err["type"] != "missing" and not isinstance(err["input"], (dict, list)):
        msg = f"{msg}, got {_short(err['input'])}"
    return ConfigError(key, msg)


def shown_key(key) -> str:
    """A key as a message shows it: as written if plain text, else quoted with escapes (an empty or
    unprintable key would otherwise name nothing)."""
    text = str(key)
    plain = isinstance(key, (str, int)) and text.isprintable() and text.strip() == text != ""
    return text if plain else repr(key)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_union_tag(part) -> bool:
    # pydantic puts the union member's type name into the location ("str", "dict[str,any]")
    return isinstance(part, str) and (part in ("str", "int", "float", "bool") or "[" in part)
