"""Dataset errors (lookup, files, a user's own set) and the one download helper the loaders share.

Downloads are written to a temporary file and moved into place with
:func:`os.replace`, so an interrupted download never leaves a truncated file
that a later run would mistake for the real one.
"""

from __future__ import annotations

import os
import tempfile
import urllib.request
from pathlib import Path

from ..errors import UserError


class DatasetNotFoundError(UserError, FileNotFoundError):
    """The dataset files are not on disk (and could not or may not be downloaded)."""


class DatasetFileError(UserError, ValueError):
    """A dataset file that is truncated, corrupt or of another format."""


class UserDataError(UserError, ValueError):
    """A training set given by the user cannot be read as images with labels and ids."""


def cache_dir(name: str) -> Path:
    """Per-user cache folder for a dataset (honours ``XDG_CACHE_HOME``)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rem_unlearn" / name


def download(url: str, dest: Path, hint: str = "", timeout: float = 60.0) -> Path:
    """Fetch ``url`` to ``dest`` atomically; any failure becomes :class:`DatasetNotFoundError`."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            while chunk := resp.read(1 << 20):
                out.write(chunk)
        os.replace(tmp, dest)
    except (OSError, ValueError) as exc:  # URLError and socket timeouts are OSErrors
        Path(tmp).unlink(missing_ok=True)
        msg = f"could not download {url} to {dest}: {exc}"
        raise DatasetNotFoundError(f"{msg}. {hint}".strip()) from exc
    return dest
