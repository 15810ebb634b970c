"""Files in and out. One reader per format for files users hand in (configs, profiles, point lists,
summaries, measurement CSVs); one JSON sanitiser; output paths checked before the work starts and
results written all or nothing.

Every failure is one line naming the file (and the line where there is one): a missing file, a
folder, bytes that are not UTF-8, YAML or JSON that does not parse, a folder that cannot be written.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from servesim.core.errors import ConfigError, InputFileError


def read_text(path: str | Path, what: str = "file") -> str:
    """A text file's content as str (UTF-8, a byte-order mark allowed)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except IsADirectoryError:
        raise InputFileError(p, f"cannot read {what}: it is a folder") from None
    except OSError as exc:
        raise InputFileError(p, f"cannot read {what} ({exc.strerror or exc})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputFileError(p, f"not UTF-8 text (byte 0x{data[exc.start]:02x})", line) from None


def open_text(path: str | Path, what: str = "file") -> io.StringIO:
    """`read_text` as a file object (for csv readers)."""
    return io.StringIO(read_text(path, what), newline="")


def read_table(path: str | Path, what: str = "CSV file", **kwargs):
    """A CSV file servesim wrote (requests.csv, sweep.csv) as a pandas frame."""
    import pandas as pd

    try:
        return pd.read_csv(open_text(path, what), **kwargs)
    except pd.errors.EmptyDataError:
        raise InputFileError(path, f"empty {what}") from None
    except (pd.errors.ParserError, ValueError) as exc:
        raise InputFileError(path, f"not a readable {what} ({' '.join(str(exc).split())[:160]})") from None


class _Loader(yaml.SafeLoader):
    """YAML as people write it: `1e-5` and `3E6` are numbers (YAML 1.1 wants a dot in them)."""


class _ShippedLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """`_Loader` on libyaml's C parser where PyYAML has it (~8x faster), for the files servesim
    ships (profiles are read on every run): they are known to parse. A user's file keeps the
    pure-Python parser, whose messages are the ones documented."""


for _loader in (_Loader, _ShippedLoader):
    _loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
        list("-+0123456789"),
    )

_PACKAGE = Path(__file__).resolve().parents[1]


def yaml_loads(text: str) -> Any:
    """Parse YAML text (raises yaml.YAMLError)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def read_yaml(path: str | Path, what: str = "YAML file") -> Any:
    text = read_text(path, what)
    shipped = Path(path).resolve().is_relative_to(_PACKAGE)
    try:
        return yaml.load(text, Loader=_ShippedLoader if shipped else _Loader)  # noqa: S506 - safe loaders
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise InputFileError(path, f"invalid YAML: {problem}", mark.line + 1 if mark else None) from None
    except RecursionError:
        raise InputFileError(path, "invalid YAML: nested too deeply") from None


def read_json(path: str | Path, what: str = "JSON file") -> Any:
    text = read_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputFileError(path, f"invalid JSON: {exc.msg}", exc.lineno) from None
    except RecursionError:
        raise InputFileError(path, "invalid JSON: nested too deeply") from None


def jsonable(value: Any) -> Any:
    """Plain JSON values: NaN and infinities become null, numpy scalars Python numbers."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return jsonable(value.item())
    return value


# -- writing: checked before the work, all or nothing ------------------------------------------------
def check_output_dir(path: str | Path, key: str = "--out") -> Path:
    """A folder that results can go to (it may not exist yet): checked before anything runs."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ConfigError(key, f"{p} exists and is not a folder")
    _check_creatable(p, key)
    return p


def check_output_file(path: str | Path, key: str = "--out") -> Path:
    """A file that a result can be written to (its folder may not exist yet)."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(key, f"{p} is a folder, expected a file name")
    _check_creatable(p.parent, key)
    return p


def _check_creatable(folder: Path, key: str) -> None:
    existing = folder.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(key, f"cannot create {folder}: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(key, f"cannot write into {existing} (permission denied)")


def write_file(path: str | Path, write: Callable[[Path], None]) -> Path:
    """`write(tmp)` to a temporary file beside `path`, then moved over it: no half-written file."""
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=p.suffix or ".tmp")
        os.close(fd)
    except OSError as exc:
        raise InputFileError(p, f"cannot write ({exc.strerror or exc})") from None
    try:
        write(Path(tmp))
        os.replace(tmp, p)
    except OSError as exc:
        raise InputFileError(p, f"cannot write ({exc.strerror or exc})") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return p


def write_folder(
    folder: str | Path, files: Mapping[str, Callable[[Path], None]], owned: Iterable[str] = ()
) -> list[str]:
    """Write a set of files (name -> `write(path)`) into `folder`, all or nothing.

    Everything is written into a temporary folder beside it first; only when all succeeded do the
    files move into place. Files named in `owned` that this set does not include are removed, so a
    folder never mixes the files of two runs. A failure leaves `folder` as it was.
    """
    out = Path(folder)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as exc:
        raise InputFileError(out, f"cannot write ({exc.strerror or exc})") from None
    try:
        for name, write in files.items():
            write(tmp / name)
        if not out.exists():
            os.replace(tmp, out)
        else:
            for name in set(owned) - set(files):
                (out / name).unlink(missing_ok=True)
            for name in files:
                # Unlinked, then renamed to: ext4 writes a file's data out before it replaces
                # another by rename (auto_da_alloc), ~3 ms a file of a short run's wall time
                (out / name).unlink(missing_ok=True)
                os.replace(tmp / name, out / name)
    except OSError as exc:
        raise InputFileError(out, f"cannot write ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return list(files)


def save_figure(fig, path: str | Path, dpi: int = 120) -> Path:
    """Write a matplotlib figure (parent folders made) and release it from pyplot."""
    import matplotlib.pyplot as plt

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out
