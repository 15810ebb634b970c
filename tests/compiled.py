"""Whether the servesim under test runs its opt-in compiled core (setup.py, SERVESIM_COMPILE=1)."""

import pytest

import servesim.engine.instance

COMPILED = servesim.engine.instance.__file__.endswith((".so", ".pyd"))

pure_python_only = pytest.mark.skipif(
    COMPILED, reason="reaches into the pure modules (patches their globals, stands in for a class, "
    "counts traceback lines), which compiled code does not see or shows differently")
