"""Command line: parse, call, print, exit code. Each command group lives in its own module.

Exit codes (docs/interface.md): 0 ok, 1 a check failed, 2 bad input (one line on stderr), 3 an internal
error (a short traceback and a line saying it is a bug), 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import atexit
import gc
import logging
import os
import sys
import threading
import traceback

from servesim.core.errors import ArgumentError, ServesimError

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_CODES = "Exit codes: 0 ok, 1 check failed, 2 bad input, 3 internal error, 130 interrupted."
CONTRACT = "docs/interface.md in the servesim repository describes every command, config key and output"


class UsageError(ServesimError):
    """Bad command-line arguments."""


class Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("epilog", f"{EXIT_CODES} {CONTRACT}.")
        super().__init__(*args, **kwargs)

    def error(self, message):  # one line, exit 2, no usage dump
        raise UsageError(f"{self.prog}: {message}")


def build_parser(argv: list[str] | None = None) -> Parser:
    """The parser of every command; for `run` and `validate` (named first in `argv`) only theirs:
    the other command groups' modules and ~200 arguments cost ~0.02 s, a tenth of a short run."""
    from servesim.cli import run as run_cmd

    parser = Parser(prog="servesim", description="Discrete-event simulator for LLM serving clusters")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    only_run = bool(argv) and argv[0] in run_cmd.COMMANDS
    for module in (run_cmd,) + (() if only_run else _optional_modules()):
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


_collection_paused = False


def pause_collection() -> None:
    """Keep the garbage collector from running during start-up of a one-shot process (the
    `servesim` executable). Start-up (modules, the config schema, the parser, the catalogs, the
    requests) makes tens of thousands of objects that live to the end: the collector would run
    ~100 times over them and find nothing, ~0.05 s CPU of a short run."""
    global _collection_paused
    if gc.isenabled():
        gc.disable()
        _collection_paused = True


def resume_collection() -> None:
    """End of start-up (a command's real work begins): what exists now is frozen out of the
    collector's reach, and it runs again. Does nothing unless `pause_collection` paused it."""
    global _collection_paused
    if _collection_paused:
        _collection_paused = False
        gc.freeze()
        gc.enable()


def main(argv: list[str] | None = None) -> int:
    _warnings_to_stderr()
    try:
        argv = sys.argv[1:] if argv is None else argv
        args = build_parser(argv).parse_args(argv)
        if not getattr(args, "resumes_collection", False):  # `run` resumes when it simulates
            resume_collection()
        code = args.handler(args)
    except ArgumentError as exc:  # a library argument: name the command-line flag
        print(one_line(f"error: {exc.flag}: {exc.message}"), file=sys.stderr)
        code = EXIT_BAD_INPUT
    except ServesimError as exc:
        print(one_line(f"error: {exc}"), file=sys.stderr)
        code = EXIT_BAD_INPUT
    except BrokenPipeError:
        code = EXIT_OK
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - anything else is servesim's fault, not the user's
        report_bug(exc)
        code = EXIT_INTERNAL
    return int(code or 0)


def one_line(text: str) -> str:
    """The message as one printable line: user input echoed in it may hold line breaks or
    control characters, shown escaped (`\\x1c`)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def report_bug(exc: BaseException) -> None:
    """The last frames of the traceback, and a line that says this is a bug (exit code 3)."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-4))
    print(text.rstrip(), file=sys.stderr)
    print(
        "internal error: this is a bug in servesim, not a problem with your input; please report it "
        "with the command line and the config",
        file=sys.stderr,
    )


def entry() -> None:
    # One simulation is one thread of Python: OpenBLAS's worker threads only cost start-up (~0.05 s
    # CPU, ~0.09 s wall) and spin on the other cores; a caller's own setting wins. Set before numpy loads.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    pause_collection()
    code = main()
    leave(code)


def leave(code: int) -> None:
    """End the process with `code` as `sys.exit` would, less the interpreter's teardown."""
    # Exiting collects every object the run left (modules, schemas, arrays): ~0.09 s of a short run.
    # Freezing them skips that traversal; memory goes back to the system with the process anyway.
    gc.freeze()
    if threading.active_count() == 1:  # no thread for the interpreter to wait for
        # What exiting does, less the teardown that follows: clearing ~500 modules and freeing
        # their objects one by one, ~0.01-0.02 s of a short run that the system does at once.
        atexit._run_exitfuncs()  # handlers still run: logging's flush, temporary files, plugins'
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except OSError:  # a closed pipe: the interpreter reports it at exit, as it always has
            sys.exit(code)
        os._exit(code)
    sys.exit(code)
