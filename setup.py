"""The opt-in compiled core (docs/performance.md, "Compiled core: mypyc").

By default this adds nothing: `pip install .` builds the pure-Python package and needs no compiler.
With `SERVESIM_COMPILE=1` in the environment, mypyc compiles the hot-path modules (COMPILED) into
one C extension that Python imports in place of their `.py` files (same results, byte for byte;
tests/test_compiled_core.py). If mypyc or a C compiler is missing, or a module does not compile,
the build says why on stderr and installs the pure-Python package instead.
"""

import os
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

COMPILED = [  # the simulation loop's modules (py-spy); no pydantic model among them (mypyc's C
    # for one does not build, and a compiled runtime-checkable Protocol fails: both sit in
    # schedulers/batching_api.py)
    "engine/instance.py", "engine/mixed_run.py", "engine/decode_run.py", "engine/power.py",
    "engine/clock.py",
    "core/cohort.py", "core/request.py", "core/step.py", "core/sums.py", "kv/manager.py",
    "schedulers/core.py", "schedulers/batching.py", "schedulers/chunk_runs.py",
    "cost/roofline.py", "cost/power.py", "cost/shape.py",
    "cost/work.py", "metrics/steps.py", "metrics/gaps.py",
    "metrics/request_log.py", "workload/factory.py", "routers/load_index.py",
]


def _fall_back(reason: object) -> None:
    print(f"servesim: SERVESIM_COMPILE=1 but the compiled core was not built ({reason}); "
          "installing the pure-Python package", file=sys.stderr)


def compiled_extensions() -> list:
    if os.environ.get("SERVESIM_COMPILE") != "1":
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        _fall_back("mypyc is not installed: pip install mypy")
        return []
    try:  # mypy's type errors end in SystemExit
        # silent: the modules they import are read for types, their own findings not reported
        paths = [str(Path("src/servesim") / m) for m in COMPILED]
        return mypycify(["--follow-imports=silent", *paths], opt_level="3", group_name="servesim_compiled")
    except BaseException as exc:  # noqa: BLE001 - any failure leaves the pure package
        _fall_back(f"mypyc: {exc!r}")
        return []


class OptionalBuildExt(build_ext):
    """Builds the compiled core if it can; a compiler failure leaves no extension behind."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - a missing or failing C compiler
            for path in self.get_outputs():
                Path(path).unlink(missing_ok=True)
            _fall_back(f"C build: {exc}")


if __name__ == "__main__":  # as pip's build runs it (tests import it)
    setup(ext_modules=compiled_extensions(), cmdclass={"build_ext": OptionalBuildExt})
