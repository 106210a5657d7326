"""The one exception tpv raises for bad input, its missing-file subclasses, and how OS errors become one."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


class TPVError(ValueError):
    """Bad input to tpv: the message quotes the offending value and says the fix."""


class TPVOSError(TPVError, OSError):
    """A file, folder or Hub repository could not be read or written; also an ``OSError``.

    ``except OSError`` (what transformers and huggingface_hub users already write) and ``except TPVError``
    both catch it.
    """


class TPVFileNotFoundError(TPVOSError, FileNotFoundError):
    """A file or folder tpv was asked to read does not exist; also a ``FileNotFoundError``.

    Example:
        >>> issubclass(TPVFileNotFoundError, FileNotFoundError) and issubclass(TPVFileNotFoundError, TPVError)
        True
    """


class TPVRepoNotFoundError(TPVFileNotFoundError):
    """A Hugging Face Hub repository, revision or file is missing (or, offline, not in the local cache).

    A ``FileNotFoundError`` too, as transformers raises an ``OSError`` for a model id it cannot find.
    """


@contextlib.contextmanager
def os_errors(path: str | os.PathLike, action: str):
    """Turn an ``OSError`` raised while ``action`` (e.g. "read", "write") ``path`` into one :class:`TPVError`.

    The message names the path (the one the OS reported, when it differs) and says what to do about it. The
    error is a :class:`TPVOSError` (a :class:`TPVFileNotFoundError` for a missing file), so ``except OSError``
    still catches it.

    Example:
        >>> with os_errors("/no/x.txt", "read"):
        ...     open("/no/x.txt").read()
        Traceback (most recent call last):
        tpv.core.errors.TPVFileNotFoundError: cannot read '/no/x.txt': no such file or folder; check the path
    """
    try:
        yield
    except TPVError:
        raise  # already says what went wrong (a TPVOSError is an OSError too)
    except OSError as error:
        raise os_error(error, describe_os_error(error, path, action)) from error


def os_error(error: OSError, message: str) -> TPVOSError:
    """The tpv error for an ``OSError``: a :class:`TPVFileNotFoundError` when a file is missing, else a
    :class:`TPVOSError`."""
    return (TPVFileNotFoundError if isinstance(error, FileNotFoundError) else TPVOSError)(message)


def describe_os_error(error: OSError, path: str | os.PathLike | None = None, action: str = "use") -> str:
    """One line naming the path an ``OSError`` concerns and the fix."""
    where = path if path is not None else "?"
    reported = getattr(error, "filename", None)
    # Name what the OS named (e.g. the parent that is a file), except our own hidden temporary file.
    if reported not in (None, "") and not Path(os.fspath(reported)).name.endswith(".tmp"):
        where = reported
    where = os.fspath(where)
    if isinstance(error, FileNotFoundError):
        why = "no such file or folder; check the path"
    elif isinstance(error, PermissionError):
        why = (
            "permission denied; pick a path you may "
            + ("read" if action == "read" else "write")
            + " (or change its permissions)"
        )
    elif isinstance(error, IsADirectoryError):
        why = "it is a folder; pass a file path inside it"
    elif isinstance(error, NotADirectoryError):
        why = "a part of the path is a file, not a folder; fix the path"
    elif isinstance(error, FileExistsError):
        why = "a file is in the way where a folder is needed; move it or pick another path"
    else:
        why = f"{error.strerror or error}; check the path and the disk"
    return f"cannot {action} '{where}': {why}"
