"""The `servesim` executable ends without the interpreter's teardown (cli.leave), but as exiting
would: the exit code, everything printed, and the atexit handlers."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from tests.factories import small_config

PROBE = """
import atexit, sys
atexit.register(lambda: print("atexit ran", flush=True))
sys.argv = ["servesim", *sys.argv[1:]]
from servesim.cli import entry
entry()
"""


@pytest.mark.parametrize("valid", [True, False])
def test_the_executable_exits_with_its_code_output_and_atexit_handlers(tmp_path, valid):
    config = small_config(**({} if valid else {"engine.max_num_seqs": -1}))
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    done = subprocess.run([sys.executable, "-c", PROBE, "validate", str(tmp_path / "c.yaml")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == (0 if valid else 2), done.stderr
    assert done.stdout.splitlines()[-1] == "atexit ran"
    if valid:
        assert ": ok (" in done.stdout
    else:
        assert done.stderr.startswith("error: engine.max_num_seqs") and len(done.stderr.splitlines()) == 1
