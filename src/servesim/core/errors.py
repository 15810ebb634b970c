"""Errors that reach the user. Every one maps to exit code 2 in the CLI."""

from os import PathLike


class ServesimError(Exception):
    """Base of the user-facing errors: the message is one line naming what was wrong."""


class ConfigError(ServesimError):
    """A config key has a bad value; the message names the dotted key."""

    def __init__(self, key: str, message: str):
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}" if key else message)


class ArgumentError(ConfigError):
    """A bad argument of a library function, named as the function names it (`seeds`); the
    command line names the matching flag instead (`--seeds`)."""

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")


class InputFileError(ServesimError):
    """A file (trace, measurement CSV, summary) is missing, unreadable or malformed."""

    def __init__(self, path: str | PathLike[str], message: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {message}")
