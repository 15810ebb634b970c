"""The opt-in compiled core (`SERVESIM_COMPILE=1 pip install ...`, setup.py) gives byte-identical
results to the pure-Python modules it replaces, and the default build compiles nothing."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import servesim
from tests.compiled import COMPILED

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(servesim.__file__).parent


def _setup_module():
    spec = importlib.util.spec_from_file_location("servesim_setup", ROOT / "setup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_default_build_compiles_nothing(monkeypatch):
    monkeypatch.delenv("SERVESIM_COMPILE", raising=False)
    assert _setup_module().compiled_extensions() == []


def test_without_mypyc_the_build_falls_back_to_pure_python(monkeypatch, capsys):
    monkeypatch.setenv("SERVESIM_COMPILE", "1")
    monkeypatch.setitem(sys.modules, "mypyc.build", None)  # as if mypy were not installed
    assert _setup_module().compiled_extensions() == []
    assert "installing the pure-Python package" in capsys.readouterr().err


def test_every_compiled_module_is_in_the_package():
    listed = _setup_module().COMPILED
    assert len(listed) >= 10 and all((PACKAGE / m).is_file() for m in listed)


def test_the_compiled_modules_type_check():
    """mypyc compiles only what mypy accepts: a type error here would leave the opt-in build pure
    Python, and an unchecked attribute type would fail at run time in the compiled core."""
    api = pytest.importorskip("mypy.api")
    paths = [str(ROOT / "src" / "servesim" / m) for m in _setup_module().COMPILED]
    out, err, status = api.run(["--follow-imports=silent", "--cache-dir", os.devnull,
                                "--config-file", str(ROOT / "pyproject.toml"), *paths])
    assert status == 0, out + err


@pytest.mark.skipif(not COMPILED, reason="pure-Python install (SERVESIM_COMPILE=1 pip install compiles)")
def test_compiled_core_gives_the_pure_python_results(tmp_path):
    pure = tmp_path / "pure"
    shutil.copytree(PACKAGE, pure / "servesim", ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))
    script, ref = ROOT / "tools" / "check_identical.py", tmp_path / "ref.json"
    for tree, mode in ((pure, ["--save", str(ref)]), (PACKAGE.parent, ["--compare", str(ref)])):
        env = {**os.environ, "PYTHONPATH": str(tree)}
        proc = subprocess.run([sys.executable, str(script), *mode], env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("identical")
