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
EXIT_NOT_IMPROVED = 3  # `unlearn`: no round improved on the original model, or utility fell too far; nothing written
EXIT_NOT_REMOVED = 4  # `verify`: the repair did not hold (suppressed or not healed); the report is still written
EXIT_BROKEN_PIPE = 141  # the reader of stdout went away (`rem-unlearn methods | head -3`): the shell's 128 + SIGPIPE


class UserError(Exception):
    """A user mistake; its message is one line (whitespace, newlines included, is collapsed)."""

    def __str__(self) -> str:
        return " ".join(super().__str__().split())


# Points of retain accuracy (D_r, stored labels) an unlearned model may lose against the original before it is
# refused: a repair that costs more is a broken model, not a result.  None turns the guard off (the benchmark
# records every method as it comes out).
MAX_UTILITY_DROP = 5.0


class UtilityDropError(RuntimeError):
    """The unlearned model lost more retain accuracy than allowed: it is not handed back as a result.

    ``result`` is what the call would have returned (the model included), for a
    caller who inspects it or accepts the drop after all.
    """

    def __init__(self, method: str, before: float, after: float, limit: float, result=None):
        self.method, self.before, self.after, self.limit, self.result = method, before, after, limit, result
        super().__init__(f"{method} lowered the retain accuracy from {before:.2f} % to {after:.2f} % "
                         f"({self.drop:.2f} points, more than the {limit:g} allowed)")

    @property
    def drop(self) -> float:
        return self.before - self.after


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
