"""PEP 517 build backend: setuptools' own, plus what setup.py's compiled core needs to build when
`SERVESIM_COMPILE=1` asks for it (mypy, and the packages whose types mypyc reads), so that
`SERVESIM_COMPILE=1 pip install .` stays one command. Without it the build needs exactly what
setuptools needs, and no compiler."""

import os

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403 - every other hook as setuptools defines it

COMPILE_REQUIRES = ["mypy>=2.4", "numpy>=1.24", "simpy>=4.1", "pydantic>=2.5"]


def _compile_requires() -> list[str]:
    return COMPILE_REQUIRES if os.environ.get("SERVESIM_COMPILE") == "1" else []


def _without_compiling(hook):
    """A setuptools hook that only asks setup.py for requirements or metadata, run with the
    compiled core off: mypy is not installed yet, and type-checking there would be wasted."""

    def run(*args, **kwargs):
        saved = os.environ.pop("SERVESIM_COMPILE", None)
        try:
            return hook(*args, **kwargs)
        finally:
            if saved is not None:
                os.environ["SERVESIM_COMPILE"] = saved

    return run


prepare_metadata_for_build_wheel = _without_compiling(_setuptools.prepare_metadata_for_build_wheel)
prepare_metadata_for_build_editable = _without_compiling(_setuptools.prepare_metadata_for_build_editable)


def get_requires_for_build_wheel(config_settings=None):
    hook = _without_compiling(_setuptools.get_requires_for_build_wheel)
    return hook(config_settings) + _compile_requires()


def get_requires_for_build_editable(config_settings=None):
    hook = _without_compiling(_setuptools.get_requires_for_build_editable)
    return hook(config_settings) + _compile_requires()
