"""Atomic outputs: a file or a folder of results appears whole or not at all, and two runs never mix.

- :func:`atomic_write_text`: a file written to a temporary sibling, then renamed over the target.
  A reader sees the old file or the new one, never a torn one; of two concurrent writers of one
  path, the last to finish wins, whole.
- :func:`atomic_output_dir`: a folder built in a temporary sibling and moved into place when the
  ``with`` block succeeds. A previous run's folder is replaced as a whole, never mixed with the new
  files; a failed or interrupted run leaves the previous folder as it was. Two runs writing into the
  same folder at once: the second one fails at once with :class:`OutputBusyError`
  (an exclusive ``flock`` on the hidden sibling ``.{name}.lock``, released when the run ends or dies;
  the run that holds it removes the file when it ends).
  Only an empty folder or one that a run of ours wrote (it holds the marker file :data:`MARKER`) is
  ever replaced: any other existing folder is refused with :class:`OutputFolderError` before the run,
  and so is a folder whose final rename would fail at the end: a mount point (a Docker volume, a bind
  mount), the current folder or one above it, the root, an empty path.

Temporary names are hidden siblings (``.{name}.tmp-*``) in the target's own folder, so the final rename
never crosses a file system. A run killed by SIGKILL can leave one behind; it is never presented as
output (and ``atomic_output_dir`` removes its own leftovers of earlier runs of the same target).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

__all__ = ["MARKER", "OutputBusyError", "OutputFolderError", "atomic_output_dir", "atomic_write_text", "output_folder"]

#: The file that marks a folder written by :func:`atomic_output_dir` (and so safe to replace).
MARKER = ".tempo-verl-output"


class OutputBusyError(RuntimeError):
    """Another run is writing the same output folder right now."""


class OutputFolderError(ValueError):
    """The output folder exists, is not empty, and was not written by a tempo-verl run."""


def _mount_points() -> set[str]:
    """The mount points of this process's mount namespace (Linux; empty elsewhere)."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            # field 5 is the mount point, with space, tab, newline and backslash written as octal escapes
            return {re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), line.split()[4]) for line in f}
    except OSError:
        return set()


def output_folder(path: str | os.PathLike) -> Path:
    """``path`` as an absolute output folder that can be replaced whole, else :class:`OutputFolderError`.

    The results are built beside the folder and renamed into place at the end; this refuses, before any
    work, a path where that rename cannot happen: an empty path, the root, the current folder or one that
    holds it, and a mount point (renaming it fails with "Device or resource busy").
    """
    text = os.fspath(path)
    if not text.strip():
        raise OutputFolderError(f"{text!r}: an empty path; name a new folder, e.g. tempo_out.")
    final = Path(os.path.abspath(Path(text).expanduser()))
    if final == Path(final.anchor):
        raise OutputFolderError(
            f"{text}: the root folder cannot be replaced; name a new folder in it, e.g. /tempo_out."
        )
    if Path.cwd() == final or final in Path.cwd().parents:
        raise OutputFolderError(
            f"{text}: is the current folder (or holds it), and the output folder is replaced as a whole; "
            f"name a new folder, e.g. {os.path.join(text, 'tempo_out')}."
        )
    if final.is_dir() and (os.path.ismount(final) or str(final.resolve()) in _mount_points()):
        raise OutputFolderError(
            f"{text}: is a mount point; the results are built beside the output folder and renamed into "
            f"place at the end, which a mount point refuses. Name a new folder inside it, e.g. "
            f"{os.path.join(text, 'tempo_out')}."
        )
    return final


def _check_replaceable(final: Path) -> None:
    if not final.exists():
        return
    if not final.is_dir():
        raise OutputFolderError(f"{final}: exists and is not a folder; choose another output folder.")
    if (final / MARKER).is_file() or not any(final.iterdir()):
        return
    raise OutputFolderError(
        f"{final}: holds files that no tempo-verl run wrote (no {MARKER} in it); the output folder is replaced "
        "as a whole, so choose a new or empty folder."
    )


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (temporary file in the same folder, then ``os.replace``).

    The folder is created if missing. The file gets the permissions a plain ``open(path, "w")`` would
    give (``0o666`` less the umask).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OSError: the folder or the file cannot be written (nothing is left behind then);
            :class:`IsADirectoryError` when ``path`` is a folder (``.``, ``/``, an empty path).
    """
    path = Path(path)
    if not path.name or path.is_dir():  # ".", "/", "" or a folder: renaming a file over it cannot work
        raise IsADirectoryError(errno.EISDIR, "it is a folder; name a file", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(6)}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with open(fd, "w", encoding=encoding) as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


@contextlib.contextmanager
def atomic_output_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Build an output folder in a temporary sibling; move it to ``final`` only if the block succeeds.

    Usage::

        with atomic_output_dir(out) as tmp:
            (tmp / "summary.json").write_text(...)
            ...                              # an exception here leaves `out` as it was

    On success a previous ``final`` folder is moved aside and deleted: ``final`` then holds exactly
    this run's files and the marker :data:`MARKER`. While the block runs, the exclusive lock
    ``.{name}.lock`` (next to ``final``) is held: a second run into the same ``final`` raises
    :class:`OutputBusyError` at once. A ``final`` that exists, is not empty and holds no marker (a
    folder of the user's) is never replaced: :class:`OutputFolderError`, before the block runs.

    Args:
        final: the output folder (its parent is created if missing).

    Yields:
        The temporary folder to write into.

    Raises:
        OutputBusyError: another run holds the lock of ``final``.
        OutputFolderError: ``final`` is a file, a non-empty folder no tempo-verl run wrote, or a path
            that cannot be renamed into place (see :func:`output_folder`).
    """
    final = output_folder(final)
    _check_replaceable(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    lock_path = final.with_name(f".{final.name}.lock")
    lock_fd = _lock(lock_path, final)
    try:
        for stale in final.parent.glob(f".{final.name}.tmp-*"):  # a killed earlier run's leftovers
            shutil.rmtree(stale, ignore_errors=True)
        tmp = final.with_name(f".{final.name}.tmp-{secrets.token_hex(6)}")
        os.mkdir(tmp, 0o777)
        try:
            yield tmp
            (tmp / MARKER).write_text("written by tempo-verl: this whole folder is replaced by the next run\n")
            _check_replaceable(final)
            old = final.with_name(f".{final.name}.tmp-old-{secrets.token_hex(6)}")
            if final.exists():
                os.rename(final, old)
            try:
                os.rename(tmp, final)
            except BaseException:
                if old.exists():
                    os.rename(old, final)  # put the previous run's folder back as it was
                raise
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        lock_path.unlink(missing_ok=True)  # while still holding it: see _lock
        os.close(lock_fd)  # releases the lock


def _lock(path: Path, final: Path) -> int:
    """Take the exclusive lock file ``path``; its descriptor (closing it releases the lock).

    The holder removes the file when it ends, so a lock taken on a file that is no longer at ``path``
    (another run opened it, then its holder removed it) guards nothing: it is dropped and the file now at
    ``path`` is locked instead. So two runs never both hold the lock of one folder.

    Raises:
        OutputBusyError: another run holds it.
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputBusyError(
                f"{final}: another run is writing this output folder right now; wait for it or choose another"
            ) from None
        held = os.fstat(fd)
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        if current is not None and (current.st_dev, current.st_ino) == (held.st_dev, held.st_ino):
            return fd
        os.close(fd)
