"""End-to-end fuzzing with bad input: random mutations of valid configs and input files, and random
bytes, through the CLI's entry function (in-process).

Every case must end with exit 2 and one line on stderr naming the config key or the file (with its
line where it has one), or with exit 0 when the mutation happened to leave the input valid; never
a traceback, never another exit code, and nothing written by a failed command. CI runs
`MUTATED_CONFIGS + MUTATED_FILES + RANDOM_FILES` cases (1,800).
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from servesim.cli import main
from servesim.config import SimConfig
from tests.fuzz_strategies import valid_configs

ROOT = Path(__file__).resolve().parents[1]
MUTATED_CONFIGS, MUTATED_FILES, RANDOM_FILES = 600, 800, 400  # configs: richer since wave 2, slower each
TOP_KEYS = set(SimConfig.model_fields)


def fuzz_settings(n: int):
    return settings(
        max_examples=n,
        deadline=None,
        database=None,
        derandomize=not os.environ.get("SERVESIM_FUZZ_RANDOM"),
        suppress_health_check=list(HealthCheck),
        phases=(Phase.explicit, Phase.reuse, Phase.generate),
    )


# -- running a case and judging its output -------------------------------------------------------
def run_case(
    capsys, argv: list[str], folder: Path, inputs: set[Path], names: list[str], keys: set[str] = TOP_KEYS
) -> None:
    """Run one command; check exit code, stderr and that a failure wrote nothing."""
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    assert code in (0, 2), (code, err)
    if code == 0:
        return
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert names_key_or_file(lines[0], names, keys), lines[0]
    assert {p for p in folder.rglob("*")} <= inputs, (
        f"a failed command wrote {set(folder.rglob('*')) - inputs}"
    )


_KEY = re.compile(r"^error: (--[\w-]+|\S.*?): ")


def names_key_or_file(line: str, files: list[str], keys: set[str] = TOP_KEYS) -> bool:
    """The message starts with one of the files (`path:line:` or `path:`), a config key (its first
    part one of `keys`), or a flag."""
    if any(line.startswith(f"error: {f}:") for f in files):
        return True
    m = _KEY.match(line)
    if not m:
        return False
    first = m.group(1).split(".")[0]
    return m.group(1).startswith("--") or any(w in keys for w in re.findall(r"[\w-]+", first))


# -- valid seeds ----------------------------------------------------------------------------------
SMALL_CONFIG = {
    "model": "llama3-8b",
    "hardware": "h100-sxm",
    "workload": {
        "num_requests": 6,
        "lengths": {"prompt": {"dist": "fixed", "value": 100}, "output": {"dist": "fixed", "value": 5}},
    },
}


def _summary_text() -> str:
    import servesim

    return json.dumps(servesim.simulate(SMALL_CONFIG).summary, indent=2, default=float)


def seed_files() -> dict[str, bytes]:
    """One small valid file of each kind a command reads."""
    meas = (ROOT / "data" / "measurements" / "h100" / "iterations.csv").read_text().splitlines()
    trace = (ROOT / "traces" / "azure2023" / "AzureLLMInferenceTrace_conv.csv").read_text().splitlines()
    profile = (ROOT / "src" / "servesim" / "cost" / "profiles" / "hopper.yaml").read_text()
    return {
        "config": yaml.safe_dump(SMALL_CONFIG).encode(),
        "measurements": ("\n".join(meas[:8]) + "\n").encode(),
        "profile": profile.encode(),
        "summary": _summary_text().encode(),
        "trace": ("\n".join(trace[:12]) + "\n").encode(),
        "points": b"- {seed: 1}\n- {seed: 2, slo.ttft_s: 0.5}\n",
        "lengths": b"prompt_tokens,output_tokens\n100,5\n300,9\n",
    }


SEEDS = seed_files()
GOOD_MEASUREMENTS = SEEDS["measurements"]
GOOD_SUMMARY = SEEDS["summary"]


def command(kind: str, path: Path, folder: Path, write_out: bool) -> tuple[list[str], list[Path]]:
    """The command that reads a file of `kind`, and any files it needs beside it."""
    extra: list[Path] = []

    def beside(name: str, data: bytes) -> Path:
        p = folder / name
        p.write_bytes(data)
        extra.append(p)
        return p

    out = str(folder / "out")
    if kind == "config":
        argv = ["run", str(path), "--out", out] if write_out else ["validate", str(path)]
    elif kind == "measurements":
        argv = ["costmodel", "validate", "--measurements", str(path)]
    elif kind == "profile":
        meas = beside("m.csv", GOOD_MEASUREMENTS)
        argv = ["costmodel", "validate", "--measurements", str(meas), "--profile", str(path)]
    elif kind == "summary":
        argv = ["compare", str(path), str(beside("base.json", GOOD_SUMMARY))]
    elif kind == "trace":
        argv = (
            [
                "trace",
                "generate",
                str(
                    beside(
                        "t.yaml",
                        yaml.safe_dump(
                            {**SMALL_CONFIG, "workload": {"trace": {"path": str(path), "format": "azure"}}}
                        ).encode(),
                    )
                ),
                "--out",
                str(folder / "out.csv"),
            ]
            if write_out
            else ["trace", "info", str(path)]
        )
    elif kind == "points":
        cfg = beside("c.yaml", SEEDS["config"])
        argv = ["sweep", str(cfg), "--points", str(path), "--workers", "1", "--no-progress", "--out", out]
    else:  # lengths: an empirical length file named by a config
        cfg = {**SMALL_CONFIG, "workload": {"num_requests": 6, "lengths": {"empirical": str(path)}}}
        argv = ["validate", str(beside("c.yaml", yaml.safe_dump(cfg).encode()))]
    return argv, extra


def run_file_case(capsys, kind: str, data: bytes, write_out: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = folder / f"input.{'yaml' if kind in ('config', 'profile', 'points') else 'csv'}"
        path.write_bytes(data)
        argv, extra = command(kind, path, folder, write_out)
        names = [str(path)] + [str(p) for p in extra]
        written = set(re.findall(r"[\w-]+", data.decode("utf-8", "replace")))  # keys the file spells
        run_case(capsys, argv, folder, {path, *extra}, names, TOP_KEYS | written)


# -- mutations ------------------------------------------------------------------------------------
BAD_VALUES = st.one_of(
    st.sampled_from(
        [
            -1,
            0,
            -1e9,
            1e30,
            math.nan,
            math.inf,
            -math.inf,
            "",
            "x",
            "1e-5",
            [],
            {},
            None,
            True,
            2**70,
            [1, 2],
            {"bogus": 1},
            "fcfs",
            1e-300,
        ]
    ),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)


def leaves(node, prefix=()):
    """(path, value) of every mapping entry and list item, depth first."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        yield (*prefix, key), value
        yield from leaves(value, (*prefix, key))


@st.composite
def mutated_configs(draw) -> dict:
    config = draw(valid_configs())
    paths = [p for p, _ in leaves(config)] or [("seed",)]
    path = draw(st.sampled_from(paths))
    parent = config
    for part in path[:-1]:
        parent = parent[part]
    how = draw(st.sampled_from(["value", "value", "unknown key", "delete", "section"]))
    if how == "value":
        parent[path[-1]] = draw(BAD_VALUES)
    elif how == "unknown key" and isinstance(parent, dict):
        parent["bogus_key"] = draw(BAD_VALUES)
    elif how == "delete" and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        config[draw(st.sampled_from(sorted(TOP_KEYS)))] = draw(BAD_VALUES)
    return config


def mutate_bytes(data: bytes, draw) -> bytes:
    """One random edit: overwrite, delete or insert a slice, duplicate a line, or truncate."""
    n = len(data)
    i = draw(st.integers(0, n))
    j = draw(st.integers(i, min(n, i + 40)))
    how = draw(st.sampled_from(["overwrite", "delete", "insert", "dupline", "truncate", "swapchar"]))
    if how == "overwrite":
        return data[:i] + draw(st.binary(min_size=1, max_size=12)) + data[j:]
    if how == "delete":
        return data[:i] + data[j:]
    if how == "insert":
        filler = draw(st.sampled_from([b",", b"\n", b":", b"-1", b"nan", b"\xff", b"{", b"  ", b"1e999"]))
        return data[:i] + filler + data[i:]
    if how == "dupline":
        lines = data.split(b"\n")
        k = draw(st.integers(0, len(lines) - 1))
        return b"\n".join(lines[:k] + [lines[k]] + lines[k:])
    if how == "truncate":
        return data[:i]
    return data[:i] + bytes([draw(st.integers(0, 255))]) + data[i + 1 :]


KINDS = sorted(SEEDS)


@fuzz_settings(MUTATED_CONFIGS)
@given(mutated_configs(), st.integers(0, 3))
def test_mutated_configs_fail_cleanly(capsys, config, mode):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cfg = folder / "c.yaml"
        cfg.write_text(yaml.safe_dump(config))
        argv = ["run", str(cfg), "--out", str(folder / "out")] if mode == 0 else ["validate", str(cfg)]
        run_case(capsys, argv, folder, {cfg}, [str(cfg)], TOP_KEYS | {str(k) for k in config})


@fuzz_settings(MUTATED_FILES)
@given(st.sampled_from(KINDS), st.data(), st.booleans())
def test_mutated_files_fail_cleanly(capsys, kind, data, write_out):
    run_file_case(capsys, kind, mutate_bytes(SEEDS[kind], data.draw), write_out)


@fuzz_settings(RANDOM_FILES)
@given(
    st.sampled_from(KINDS),
    st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)),
    st.booleans(),
)
def test_random_bytes_fail_cleanly(capsys, kind, data, write_out):
    run_file_case(capsys, kind, data, write_out)


@pytest.mark.parametrize("kind", KINDS)
def test_seed_files_are_valid(capsys, kind):
    """The mutations start from valid files (else the fuzzer would test nothing)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = folder / "input"
        path.write_bytes(SEEDS[kind])
        argv, _ = command(kind, path, folder, write_out=False)
        assert main(argv) == 0, capsys.readouterr().err
