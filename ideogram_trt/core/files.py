"""Every file ideogram-trt commits goes through here: atomic writes, staged folders, copies that refuse links out
of their source, paths that must stay inside a folder, stale temporaries of our own, and the engine-set lock.

The rules (README.md, "Files"):
- A committed file is written to a temporary beside it, flushed and fsync'ed, renamed over the target, and the
  folder fsync'ed: a reader sees the old file or the new one, never half of one. Any failure removes the temporary.
- Outputs go only to regular files or new paths. An existing directory, device, FIFO, socket or symbolic link is
  refused: ``-o /dev/null`` must never replace the device node with a file.
- Temporaries and staging folders carry our mark and the writer's pid: a later run removes the ones whose writer
  is gone (killed), and never anything without our mark.
- A copy follows a symbolic link only when it resolves inside the folder being copied; a link that leaves it is
  refused (copy the real file in instead), so no copy pulls in files from outside the folders a user named.
- Paths read from our own metadata (manifest entries) are relative, have no ``..``, and resolve inside their root.

Failpoints (tests only): ``IDEOGRAM_TRT_FAILPOINT=ACTION@PATTERN`` makes the commit of a file or folder whose name
matches PATTERN (fnmatch) fail just before its rename: ``kill`` sends SIGKILL to this process, ``enospc`` raises
ENOSPC after writing half of a byte payload, ``stall`` waits 5 s. Fault-injection tests use them to prove the
previous state survives.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import fnmatch
import json
import os
import re
import secrets
import shutil
import signal
import socket
import stat
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

from ideogram_trt.core.errors import IdeogramTrtError, InputError

TMP_MARK = ".ideogram-tmp-"  # .<name>.ideogram-tmp-<pid>-<token>
PARTIAL_MARK = ".ideogram-partial-"  # .<name>.ideogram-partial-<pid>-<token>/ (staging folders)
LOCK_FILE = ".ideogram-trt.lock"
FAILPOINT_ENV = "IDEOGRAM_TRT_FAILPOINT"
_OURS = re.compile(r"^\.(?P<name>.+)\.ideogram-(?:tmp|partial)-(?P<pid>\d+)-[0-9a-f]+$")


# --- outputs ------------------------------------------------------------------------------------------------------


def check_output_target(path: Path, what: str = "output") -> None:
    """Refuse ``path`` unless it is missing or a regular file (never followed through a link)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISREG(mode):
        return
    kinds = {stat.S_ISDIR: "a directory", stat.S_ISLNK: "a symbolic link", stat.S_ISCHR: "a device",
             stat.S_ISBLK: "a device", stat.S_ISFIFO: "a FIFO", stat.S_ISSOCK: "a socket"}  # fmt: skip
    kind = next((name for test, name in kinds.items() if test(mode)), "not a regular file")
    example = f" (e.g. {path / 'out.png'})" if stat.S_ISDIR(mode) else ""
    raise InputError(f"{path}: {kind}; the {what} must be a regular file or a new path{example}")


def _temp_name(target: Path, mark: str) -> Path:
    return target.with_name(f".{target.name}{mark}{os.getpid()}-{secrets.token_hex(4)}")


def staging_name(final: Path) -> Path:
    """A fresh staging-folder path beside ``final``, carrying our mark (``remove_stale`` knows it)."""
    return _temp_name(final, PARTIAL_MARK)


def _failpoint(target: Path) -> str | None:
    spec = os.environ.get(FAILPOINT_ENV)
    if not spec or "@" not in spec:
        return None
    action, pattern = spec.split("@", 1)
    return action if fnmatch.fnmatch(target.name, pattern) else None


def _fire(action: str | None, target: Path) -> None:
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if action == "stall":  # hold the commit (and any lock) for a few seconds: concurrency tests
        time.sleep(5)
    if action == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: Path, what: str = "output") -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for the caller to write (e.g. ``onnx.save``); on a clean exit it is
    fsync'ed and renamed over ``path``; on any exception (KeyboardInterrupt included) it is removed."""
    check_output_target(path, what)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path, TMP_MARK)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        _fire(_failpoint(path), path)
        check_output_target(path, what)  # it may have become something else while we wrote
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write(path: Path, data: bytes | str, what: str = "output") -> Path:
    """Write ``data`` to ``path`` atomically (see the module docstring)."""
    payload = data.encode() if isinstance(data, str) else data
    action = _failpoint(path)
    with atomic_path(path, what) as tmp, open(tmp, "wb") as handle:
        if action == "enospc":  # the disk fills half-way through the write
            handle.write(payload[: len(payload) // 2])
            handle.flush()
            _fire(action, path)
        handle.write(payload)
        handle.flush()
    return path


def atomic_copy(source: Path, destination: Path, what: str = "output") -> Path:
    with atomic_path(destination, what) as tmp:
        shutil.copyfile(source, tmp)
    return destination


@contextlib.contextmanager
def staged_dir(final: Path, replace: bool = False) -> Iterator[Path]:
    """Yield an empty staging folder beside ``final``; on a clean exit it becomes ``final`` (replacing an existing
    one when ``replace``), on any exception it is removed."""
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = _temp_name(final, PARTIAL_MARK)
    staging.mkdir()
    try:
        yield staging
        _fire(_failpoint(final), final)
        if replace and final.is_dir() and not final.is_symlink():
            old = _temp_name(final, PARTIAL_MARK)
            final.rename(old)
            staging.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    fsync_dir(final.parent)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(folder: Path, names: Callable[[str], bool] | None = None) -> list[Path]:
    """Remove temporaries and staging folders of ours in ``folder`` whose writer process is gone; only entries
    carrying our mark (and, with ``names``, whose target name it accepts). Returns what was removed."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _OURS.match(entry.name)
        if match is None or _alive(int(match["pid"])) or (names is not None and not names(match["name"])):
            continue
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


# --- paths and copies ---------------------------------------------------------------------------------------------


def resolve_inside(
    root: Path, relative: object, what: str, error: type[IdeogramTrtError] = InputError, fix: str = ""
) -> Path:
    """``root / relative`` for a relative path without ``..`` that resolves (links followed) inside ``root``."""
    tail = f"; {fix}" if fix else ""
    if not isinstance(relative, str) or not relative:
        raise error(f"{what}: {relative!r} is not a relative path{tail}")
    pure = PurePosixPath(relative)
    if pure.is_absolute() or ".." in pure.parts or "\\" in relative or "\x00" in relative:
        raise error(f"{what}: {relative!r} must be a relative path inside {root}, without '..'{tail}")
    path = root / pure
    if not path.resolve().is_relative_to(root.resolve()):
        raise error(f"{what}: {relative!r} leads out of {root} (to {path.resolve()}) through a symbolic link{tail}")
    return path


def owned_subdir(root: Path, name: str) -> Path:
    """``root/name`` as a real folder of ours: created if missing, refused if it is a link or not a folder."""
    path = root / name
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        kind = "a symbolic link" if path.is_symlink() else "not a folder"
        raise InputError(
            f"{path}: {kind}; ideogram-trt writes and cleans this folder itself: remove it (the rest of {root} "
            "is kept) and run again"
        )
    path.mkdir(parents=True, exist_ok=True)
    return path


def _refuse_link(path: Path, within: Path) -> None:
    raise InputError(
        f"{path}: a symbolic link to {path.resolve()}, outside {within}; ideogram-trt copies only files inside "
        "the folders you name: put the real file there (e.g. `cp -L`)"
    )


def check_source_file(path: Path, within: Path) -> Path:
    """``path`` if it is not a link leaving ``within``: the file to read."""
    if path.is_symlink() and not path.resolve().is_relative_to(within.resolve()):
        _refuse_link(path, within)
    return path


def copy_tree(
    source: Path, destination: Path, within: Path | None = None, skip: Callable[[Path], bool] | None = None
) -> None:
    """Copy the folder ``source`` to ``destination``: regular files by content (metadata not kept), links to files
    inside ``within`` (default: ``source``) by the content of their target; links leaving it, links to folders and
    anything else (devices, FIFOs) refused. ``skip(relative path)`` leaves entries out."""
    _walk(source, destination, (within or source).resolve(), source, skip)


def check_tree(source: Path, within: Path | None = None) -> None:
    """Refuse, before any work, what ``copy_tree`` would refuse."""
    _walk(source, None, (within or source).resolve(), source, None)


def _walk(folder: Path, destination: Path | None, within: Path, top: Path, skip: Callable[[Path], bool] | None) -> None:
    if destination is not None:
        destination.mkdir(parents=True, exist_ok=True)
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        path = Path(entry.path)
        if skip is not None and skip(path.relative_to(top)):
            continue
        target = None if destination is None else destination / entry.name
        if entry.is_symlink():
            resolved = path.resolve()
            if not resolved.is_relative_to(within):
                _refuse_link(path, within)
            if resolved.is_dir():
                raise InputError(f"{path}: a symbolic link to a folder; put the folder itself in {top}")
            if not resolved.is_file():
                raise InputError(f"{path}: a symbolic link to {resolved}, which is not a regular file")
            if target is not None:
                shutil.copyfile(resolved, target)
        elif entry.is_dir(follow_symlinks=False):
            _walk(path, target, within, top, skip)
        elif entry.is_file(follow_symlinks=False):
            if target is not None:
                shutil.copyfile(path, target)
        else:
            raise InputError(f"{path}: not a regular file or folder; {top} may hold only files and folders")


# --- the engine-set lock ------------------------------------------------------------------------------------------


class FolderLock:
    """An exclusive ``flock`` on ``folder/.ideogram-trt.lock`` for one process at a time. The kernel releases it
    when the holder exits, even by SIGKILL, so a stale lock cannot exist; the file names the holder for the error
    a second writer gets."""

    def __init__(self, folder: Path, what: str = "build") -> None:
        self.folder, self.what = folder, what
        self._fd: int | None = None

    def __enter__(self) -> FolderLock:
        path = self.folder / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise InputError(
                f"{self.folder}: another {self.what} is writing here ({holder}); wait for it to finish, or use "
                "another --out"
            ) from None
        os.ftruncate(fd, 0)
        body = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                "command": " ".join(sys.argv[:3])}  # fmt: skip
        os.write(fd, json.dumps(body).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _read_holder(fd: int) -> str:
    try:
        body = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {body['pid']} on {body['host']}, since {body['since']}: {body['command']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"
