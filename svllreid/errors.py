"""Every exception svllreid raises on purpose, under one base class, :class:`SvllreidError`.

The command line turns an :class:`SvllreidError` into ``svllreid: error: <message>`` and the exit
code in :attr:`SvllreidError.exit_code`. Each class also derives from the built-in exception that
callers caught before the base existed (``ValueError``, ``OSError``, ``RuntimeError``), so that
``except ValueError`` keeps working. This module imports nothing heavy: any layer may raise these.
"""

from __future__ import annotations

__all__ = [
    "CalibrationError",
    "CheckpointError",
    "ConfigError",
    "ConversionError",
    "DatasetError",
    "DiskFullError",
    "ExportError",
    "ImageReadError",
    "IndexFileError",
    "LaunchError",
    "MissingExtraError",
    "OutputError",
    "PretrainedError",
    "SvllreidError",
    "TrainingDiverged",
    "UploadError",
]


class SvllreidError(Exception):
    """Base of svllreid's own errors: a message for the user that says what is wrong and how to fix it."""

    #: Exit code of the command line: 2 for bad input (the argparse convention), 1 for a failed run.
    exit_code = 2


class ConfigError(SvllreidError, ValueError):
    """A configuration file or override is invalid."""


class ConversionError(SvllreidError, ValueError):
    """A checkpoint of another codebase cannot be converted (another layout, a truncated or unsafe file,
    or facts that disagree with the given settings)."""


class DatasetError(SvllreidError, ValueError):
    """A dataset cannot be read. ``problems`` lists every individual problem found; ``counted``: the
    message only counts them ("N problem(s) under ROOT:"), else it is context the problems need."""

    def __init__(self, message: str, problems: list[str] | None = None, *, counted: bool = False):
        self.problems = list(problems or [])
        self.counted = counted
        details = ""
        if self.problems:
            shown = self.problems[:20]
            details = "\n  - " + "\n  - ".join(shown)
            if len(self.problems) > len(shown):
                details += f"\n  ... and {len(self.problems) - len(shown)} more"
        super().__init__(message + details)
        self.message = message


class ImageReadError(SvllreidError, OSError):
    """An image file is missing, unreadable or corrupt."""

    def __init__(self, path: str, reason: str):
        super().__init__(
            f"cannot read image {path}: {reason}. Run 'svllreid data check' on the dataset to list every bad file."
        )
        self.path = path


class CheckpointError(SvllreidError, ValueError):
    """A checkpoint cannot be read or does not fit the model / run it is loaded into."""


class CalibrationError(SvllreidError, ValueError):
    """A same-identity threshold that cannot be chosen (a calibration set without pairs, an FPR it cannot
    resolve), read (a damaged file), or used (made for another network)."""


class PretrainedError(SvllreidError, ValueError):
    """Pretrained weights cannot be found, read, or do not fit the architecture."""


class IndexFileError(SvllreidError, ValueError):
    """An index file that cannot be read: missing, not an index, damaged, or of a newer version."""


class OutputError(SvllreidError, OSError):
    """An output file that cannot be written where asked (checked before the work that fills it)."""


class DiskFullError(SvllreidError, OSError):
    """No space was left on the disk (or quota) while writing a file; the file's previous version, if
    any, is intact (writes are atomic)."""

    exit_code = 1


class MissingExtraError(SvllreidError, ImportError):
    """A feature needs an optional dependency that is not installed; the message names the extra."""


class UploadError(SvllreidError, ValueError):
    """An uploaded query (``svllreid serve``) is not what the server takes: not an image of an accepted
    format, too large, or a malformed request. ``status`` is the HTTP status it answers with (4xx)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class ExportError(SvllreidError, RuntimeError):
    """A network could not be exported, or its export does not give the network's features."""

    exit_code = 1


class TrainingDiverged(SvllreidError, RuntimeError):
    """A loss became NaN or infinite; the message names the stage, epoch, step and loss term."""

    exit_code = 1


class LaunchError(SvllreidError, RuntimeError):
    """A process of a torchrun launch failed, so every process stops: raised on the main process with
    the failing rank's message, and on the others with ``shown_by_main`` (the command line prints it
    once, from the main process). ``exit_code`` is the failing process's."""

    def __init__(self, message: str, *, exit_code: int = 1, shown_by_main: bool = False):
        super().__init__(message)
        self.exit_code = exit_code
        self.shown_by_main = shown_by_main
