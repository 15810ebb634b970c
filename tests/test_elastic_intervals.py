"""A control loop's interval must let simulated time advance: 1e-300 s passed validation and the
autoscaler's or the rebalancer's loop then never ended the run (exit 2 naming the key instead)."""

from __future__ import annotations

from pathlib import Path

import pytest

from servesim.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "config, key",
    [
        ("configs/elastic/diurnal_autoscaled.yaml", "cluster.autoscaling.interval_s"),
        ("configs/elastic/migration_bursty.yaml", "cluster.migration.interval_s"),
    ],
)
def test_a_tiny_control_interval_is_bad_input(config, key, tmp_path, capsys):
    code = main(["run", str(ROOT / config), "--set", f"{key}=1e-300", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and key in err, err
    assert not (tmp_path / "out").exists()
