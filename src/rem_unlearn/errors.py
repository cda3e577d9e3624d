"""The one base class of every mistake a user can make, and the exit statuses of the command.

A :class:`UserError` is something the user gave (a file, a path, an option, a
config value) that cannot be used.  ``rem-unlearn`` prints its message as one
line and exits with :data:`EXIT_USER`; any other exception is a bug and keeps
its traceback.  Each error module subclasses it together with the built-in
type callers already catch (``ConfigError(UserError, ValueError)``, ...).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_INTERNAL = 1  # an unexpected error (a bug): Python prints the traceback; also `bench` with failed cells
EXIT_USER = 2  # a user mistake: one line on stderr, nothing written
EXIT_NOT_IMPROVED = 3  # `unlearn`: no round improved on the original model, nothing written
EXIT_BROKEN_PIPE = 141  # the reader of stdout went away (`rem-unlearn methods | head -3`): the shell's 128 + SIGPIPE


class UserError(Exception):
    """A user mistake; its message is one line (whitespace, newlines included, is collapsed)."""

    def __str__(self) -> str:
        return " ".join(super().__str__().split())


class MissingExtraError(UserError, ImportError):
    """An optional feature whose extra is not installed; the default install never needs one."""


def require_extra(module: str, extra: str, feature: str):
    """Import ``module`` for ``feature``, or say in one line which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(f"{feature} needs the optional extra {extra}, which is not installed ({exc}): "
                                f"pip install 'rem-unlearn[{extra}]'") from None
