"""Shipped YAML: files servesim ships parse with libyaml's C parser, to the same data; the
catalogs make an entry into Python values when it is first asked for, to the same values."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import servesim
from servesim.core import files
from servesim.core.files import read_text, read_yaml

SHIPPED = sorted(Path(servesim.__file__).parent.rglob("*.yaml"))


def test_the_package_ships_yaml_files():
    assert len(SHIPPED) >= 20  # catalogs, cost, power and engine profiles


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(p.parents[2])))
def test_a_shipped_file_reads_the_same_with_either_parser(path):
    text = read_text(path)
    assert read_yaml(path) == yaml.load(text, Loader=files._Loader)  # noqa: S506 - a safe loader


def test_a_users_file_keeps_the_pure_python_parser(tmp_path, monkeypatch):
    used = []
    monkeypatch.setattr(files.yaml, "load", lambda text, Loader: used.append(Loader) or {})
    (tmp_path / "p.yaml").write_text("a: 1e-5\n")
    read_yaml(tmp_path / "p.yaml")
    read_yaml(SHIPPED[0])
    assert used == [files._Loader, files._ShippedLoader]


@pytest.mark.parametrize("kind", ["models", "hardware"])
def test_a_catalog_made_entry_by_entry_is_the_whole_file(kind):
    from servesim.catalog import specs

    whole = yaml.safe_load((specs._HERE / f"{kind}.yaml").read_text())
    table = specs._Catalog((specs._HERE / f"{kind}.yaml").read_text())
    assert list(table) == list(whole) and len(table) == len(whole)
    assert {name: table[name] for name in table} == whole
