"""A user's files: path checks before any work, atomic writes, and locks between processes.

* :func:`check_output` refuses, before any work, an output that is an input
  (also through a symbolic or hard link), has the wrong suffix, is a folder or
  not a regular file, lies where nothing can be written, or already exists
  (unless ``force``).
* Every write goes to a unique temporary file next to its target
  (``tempfile.mkstemp``: two writers never share a name), is flushed to disk
  and moved into place with ``os.replace``; the temporary file is removed on
  any error, so a reader sees the old file or the whole new one.
* An output folder (a Hugging Face ``save_pretrained`` folder) is written
  whole into a unique temporary folder and renamed into place
  (:func:`atomic_folder`); :func:`check_output_folder` checks it first.
* :class:`FileLock` is an advisory ``fcntl.flock`` lock (POSIX; on other
  systems it locks nothing and only the unique temporary names protect files).
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from .errors import UserError

try:
    import fcntl
except ImportError:  # not POSIX
    fcntl = None  # type: ignore[assignment]


class PathError(UserError, ValueError):
    """An input that is missing, or an output path that cannot or must not be written."""


def same_file(a: str | Path, b: str | Path) -> bool:
    """``a`` and ``b`` name one file: equal once links are resolved, or the same inode (a hard link)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_input(path: str | Path, what: str, *, folder_ok: bool = False) -> Path:
    """An input that exists (a file, or also a folder with ``folder_ok``)."""
    path = Path(path)
    if not path.exists():
        raise PathError(f"{what} {path}: not found")
    if not (path.is_file() or (folder_ok and path.is_dir())):
        raise PathError(f"{what} {path}: not a {'file or folder' if folder_ok else 'file'}")
    return path


def check_output(path: str | Path, what: str, *, suffixes: tuple[str, ...] = (),
                 inputs: Iterable[str | Path | None] = (), force: bool = False) -> Path:
    """Refuse an output path that would destroy something or fail after the work; nothing is written."""
    path = Path(path)
    for source in inputs:
        if source is not None and same_file(path, source):
            raise PathError(f"{what} {path} is an input ({source}); inputs are never overwritten, choose another path")
    if suffixes and path.suffix.lower() not in suffixes:
        raise PathError(f"{what} {path}: give a path ending in {' or '.join(suffixes)}")
    if path.is_dir():
        raise PathError(f"{what} {path} is a folder; give a file path")
    if path.exists() or path.is_symlink():
        if path.exists() and not path.is_file():
            raise PathError(f"{what} {path} exists and is not a regular file")
        if not force:
            raise PathError(f"{what} {path} already exists; use --force to replace it")
    check_writable_folder(path.parent, what)
    return path


def _inside(path: str | Path, folder: str | Path) -> bool:
    """``path`` is ``folder`` or lies under it, links resolved."""
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_output_folder(path: str | Path, what: str, *, inputs: Iterable[str | Path | None] = (),
                        force: bool = False, marker: str | None = None) -> Path:
    """An output *folder* that is written whole and moved into place: refused before any work when it is,
    holds or lies inside an input, is a file, or exists (unless ``force``; then only a folder holding
    ``marker``, one this tool wrote, is replaced: ``--force`` never deletes an arbitrary folder)."""
    path = Path(path)
    for source in inputs:
        if source is not None and (_inside(path, source) or _inside(source, path)):
            raise PathError(f"{what} {path} is, holds or lies inside an input ({source}); inputs are never "
                            "overwritten, choose another folder")
    if path.exists() or path.is_symlink():
        if path.is_symlink() or not path.is_dir():
            raise PathError(f"{what} {path} exists and is not a folder")
        if not force:
            raise PathError(f"{what} {path} already exists; use --force to replace it")
        if marker and not (path / marker).is_file():
            raise PathError(f"{what} {path} exists and was not written by rem-unlearn (no {marker}); "
                            "--force replaces only such a folder, choose another path")
    check_writable_folder(path.parent, what)
    return path


@contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """A unique temporary folder next to ``path``, moved onto ``path`` when the block succeeds, else removed.

    A folder cannot be swapped in one step: an existing ``path`` is first renamed
    aside, the new folder renamed into place, then the old one deleted, so a
    reader sees the old folder, nothing for an instant, or the whole new one,
    never a half-written one.
    """
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's 0700 would make the result private
        yield tmp
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old"))
            os.replace(path, old / path.name)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def check_writable_folder(folder: str | Path, what: str) -> Path:
    """``folder``, or its nearest existing parent (missing folders are created when writing), is writable."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise PathError(f"{what}: {existing} is not a folder")
    try:  # the real test: permissions, read-only mounts and ACLs all show here, also for root
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".rem-unlearn-probe.", suffix=".tmp")
    except OSError as exc:
        raise PathError(f"{what}: cannot write in {existing} ({exc.strerror or exc})") from exc
    os.close(fd)
    os.unlink(probe)
    return folder


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A unique temporary path next to ``path``: moved onto ``path`` when the block succeeds, else removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        os.chmod(tmp, _mode_for(path))  # mkstemp's 0600 would make the result private
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _mode_for(path: Path) -> int:
    """The permissions a plain ``open(path, "w")`` gives: the existing file's, else 0666 less the umask."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return 0o666 & ~_umask()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def read_json_object(path: str | Path, error: type[Exception], what: str) -> dict[str, Any]:
    """The JSON object in ``path``, or ``error`` saying why not (unreadable, not JSON, not an object)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{path}: not a readable {what} ({exc})") from exc
    if not isinstance(data, dict):
        raise error(f"{path}: not a {what} (expected a JSON object)")
    return data


def json_text(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=str)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json_text(obj))


def atomic_savefig(fig, path: str | Path, **kwargs) -> Path:
    """``fig.savefig`` through a temporary file (the format comes from ``path``'s suffix)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", **kwargs)
    return path


def remove_temp_files(folder: str | Path) -> None:
    """Remove the temporary files of killed writers; call it only while no other writer uses ``folder``."""
    folder = Path(folder)
    if folder.is_dir():
        for tmp in folder.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)


class FileLock:
    """An advisory lock on ``path`` (created if needed, never deleted: deleting races with its next user).

    ``acquire(blocking=False)`` returns False when another process holds it;
    ``shared=True`` takes a shared lock (many holders, no exclusive one).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.fd: int | None = None

    def acquire(self, *, blocking: bool = True, shared: bool = False) -> bool:
        if fcntl is None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        flags = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if blocking else fcntl.LOCK_NB)
        try:
            fcntl.flock(fd, flags)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "FileLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
