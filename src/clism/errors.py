"""The errors a user can cause. Each names the file or flag, the record and the fix; the CLI
prints it in one line and exits with status 2. Anything else is a bug and keeps its traceback."""
from __future__ import annotations


class ClismError(Exception):
    """Base of every user-facing error."""


class MissingDependencyError(ClismError, RuntimeError):
    """An optional package that this command needs is not installed."""


class UnknownNameError(ClismError, KeyError):
    """A dataset, language or split that the registry does not know."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class InputError(ClismError, ValueError):
    """Flags or inputs that cannot be used together, or a value that cannot be used."""


class TrainingDivergedError(ClismError, FloatingPointError):
    """The loss became NaN or infinite."""


class HubError(ClismError):
    """The Hugging Face Hub refused a push or could not be reached."""


class NotFoundError(ClismError, FileNotFoundError):
    """A file, folder, checkpoint or data set that is not where the user said."""
