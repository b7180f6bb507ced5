"""One exception root for deploypipe.

A :class:`DeploypipeError` is a mistake the user can fix: the CLI prints its message
(one sentence naming the problem and the fix) and exits with code 2, no traceback.
An :class:`InternalError` is our own bug: the CLI says so and asks for a report.
"""
from __future__ import annotations


class DeploypipeError(Exception):
    """A problem with the user's input, environment or request; exit code 2."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None):
        self.message = message.rstrip()
        self.hint = hint
        super().__init__(self.sentence())

    def sentence(self) -> str:
        msg = self.message
        if self.hint:
            msg = f"{msg.rstrip('.')}; {self.hint}"
        return msg if msg.endswith((".", "?", "!")) else msg + "."


class InputError(DeploypipeError):
    """A file, folder or argument that cannot be used as given."""


class UnsupportedError(DeploypipeError):
    """A model, op or configuration deploypipe does not handle."""


class BudgetError(DeploypipeError):
    """A pruning budget that cannot be met."""


class DeviceError(DeploypipeError):
    """A target device or backend that is not available here."""


class VerificationError(DeploypipeError):
    """Two computations that should agree do not (exit code 1: the result is not trusted)."""

    exit_code = 1


class InternalError(RuntimeError):
    """A bug in deploypipe, not a user mistake; exit code 3."""

    exit_code = 3
