"""Command line: parse, call, print, exit code. Each command group lives in its own module.

Exit codes: 0 ok, 1 a check failed, 2 bad input (one line on stderr), others internal errors.
"""

from __future__ import annotations

import argparse
import logging
import sys

from servesim.core.errors import ServesimError

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class UsageError(ServesimError):
    """Bad command-line arguments."""


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, no usage dump
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> Parser:
    from servesim.cli import run as run_cmd

    parser = Parser(prog="servesim", description="Discrete-event simulator for LLM serving clusters")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for module in (run_cmd,) + _optional_modules():
        module.register(sub)
    return parser


def _optional_modules() -> tuple:
    import importlib

    mods = []
    for name in ("trace", "costmodel", "studies", "replay"):
        try:
            mods.append(importlib.import_module(f"servesim.cli.{name}"))
        except ModuleNotFoundError as exc:
            if exc.name != f"servesim.cli.{name}":
                raise
    return tuple(mods)


class _StderrHandler(logging.StreamHandler):
    """Library warnings (skipped trace rows, ...) as plain lines on whatever stderr is now."""

    def __init__(self):
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _):
        pass


def _warnings_to_stderr() -> None:
    log = logging.getLogger("servesim")
    if not any(isinstance(h, _StderrHandler) for h in log.handlers):
        log.addHandler(_StderrHandler())
        log.setLevel(logging.WARNING)
        log.propagate = False


def main(argv: list[str] | None = None) -> int:
    _warnings_to_stderr()
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        code = args.handler(args)
    except ServesimError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = EXIT_BAD_INPUT
    except BrokenPipeError:
        code = EXIT_OK
    return int(code or 0)


def entry() -> None:
    sys.exit(main())
