"""Atomic file writes: write to a temporary file in the same directory, fsync, then rename.

A reader (or a crash at any moment) sees either the old file or the complete new one, never half
of one. Every file seqgen writes for the user goes through here.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from seqgen.errors import SeqgenError, UsageError


class WriteError(SeqgenError):
    """A file could not be written (missing directory, read-only or full disk)."""

    exit_code = 1


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
    """Flush a directory's entries (a rename) to disk, where the OS allows it (not Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as e:  # a full or failing disk is an error; "not supported here" is not
        if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF):
            raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is fsynced and renamed over `path`,
    and the directory is fsynced so that the rename is on disk too.

    On any error the temporary file is removed and `path` is left as it was.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as e:
        raise WriteError(f"cannot write {path}: {e.strerror or e}") from e
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates the file 0600 (and a writer may replace it: safetensors' save_file
        # does); give it the mode an ordinary open() would, 0666 less the umask
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)  # the rename itself survives a power cut
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise WriteError(f"cannot write {path}: {e.strerror or e}") from e
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


LOCK_NAME = ".seqgen.lock"


class Locked(UsageError):
    """Another live seqgen process holds the lock of a directory."""


def read_bytes(path: Path, error: type[SeqgenError], what: str, missing: str,
               max_bytes: int | None = None,
               too_large: Callable[[int], str] | None = None) -> bytes:
    """The bytes of `path`; a missing, oversized (`too_large(size)` says why), unreadable file or
    a directory is one `error` naming it."""
    try:
        size = path.stat().st_size
        if max_bytes is not None and size > max_bytes:
            raise error(f"{path}: {too_large(size) if too_large else 'too large'}")
        return path.read_bytes()
    except FileNotFoundError:
        raise error(f"{path}: {missing}") from None
    except IsADirectoryError:
        raise error(f"{path}: is a directory, expected the {what}") from None
    except PermissionError:
        raise error(f"{path}: permission denied") from None
    except OSError as e:
        raise error(f"{path}: cannot read ({e.strerror})") from None


def read_json_object(path: Path, error: type[SeqgenError], what: str, missing: str,
                     max_bytes: int | None = None) -> dict:
    """The JSON object in `path`. Every way it can fail is one `error` naming the file and `what`
    it should have been: `missing` (the message for no such file), too large, not UTF-8, invalid
    JSON (with its line), absurd numbers or nesting, not an object."""
    raw = read_bytes(path, error, what, missing, max_bytes,
                     lambda size: f"{size:,} bytes is too large for a {what}")
    try:
        d = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise error(f"{path}: not UTF-8 text; expected the {what}") from None
    except json.JSONDecodeError as e:
        raise error(f"{path}: line {e.lineno}: invalid JSON ({e.msg}); the {what} is corrupt or "
                    "truncated") from None
    except ValueError as e:  # an integer of thousands of digits
        raise error(f"{path}: {str(e).split(':')[0].lower()}; not a {what}") from None
    except RecursionError:
        raise error(f"{path}: JSON nested too deeply; not a {what}") from None
    if not isinstance(d, dict):
        raise error(f"{path}: expected a JSON object, found {type(d).__name__}; not a {what}")
    return d


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder(text: str) -> tuple[int | None, str]:
    """(pid, host) from a lock file's text "pid host started-at"."""
    parts = text.split()
    try:
        return int(parts[0]), (parts[1] if len(parts) > 1 else "")
    except (ValueError, IndexError):
        return None, ""


@contextlib.contextmanager
def directory_lock(directory: str | os.PathLike, option: str | None = "--out"
                   ) -> Iterator[str | None]:
    """Hold an exclusive lock on `directory` (the file .seqgen.lock in it) while writing there.

    A second process asking for the lock gets a Locked error (exit 2) naming the holder's pid.
    The lock is an fcntl.flock, which the kernel drops when its process dies, so a lock file left
    by a killed run is stale and is taken over; where flock is unavailable (some network file
    systems), the pid written in the file decides: a lock whose process no longer runs on this
    host is stale. Yields the stale lock's description ("pid 123 on host") or None.
    """
    directory = Path(directory)
    path = directory / LOCK_NAME
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{option or 'the run directory'} {directory}: is a file, not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WriteError(f"cannot create {directory}: {e.strerror or e}") from e
    host = socket.gethostname()
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise WriteError(f"cannot create {path}: {e.strerror or e}") from e
        previous = os.read(fd, 256).decode("utf-8", "replace")
        pid, phost = _holder(previous)
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (BlockingIOError, PermissionError):
            os.close(fd)
            who = f"pid {pid}" + (f" on {phost}" if phost and phost != host else "") if pid \
                else "another process"
            raise Locked(f"{directory}: another seqgen run ({who}) is writing to it; wait for "
                         f"it to finish{f', or choose another {option}' if option else ''}"
                         ) from None
        except (ImportError, OSError):  # no flock here: judge by the pid in the file
            if pid is not None and pid != os.getpid() and phost == host and _pid_alive(pid):
                os.close(fd)
                raise Locked(f"{directory}: another seqgen run (pid {pid}) is writing to it; "
                             f"wait for it to finish{f', or choose another {option}' if option else ''}"
                             ) from None
        # The holder we raced with may have released and removed the file meanwhile: make sure
        # the file locked is the one at `path`.
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    stale = f"pid {pid}" + (f" on {phost}" if phost and phost != host else "") \
        if pid is not None and pid != os.getpid() else None
    try:
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {host} {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode(),
                      0)
        except OSError as e:
            raise WriteError(f"cannot write {path}: {e.strerror or e}") from e
        yield stale
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)


def is_locked(directory: str | os.PathLike) -> bool:
    """True when a live process holds `directory`'s lock."""
    path = Path(directory) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (BlockingIOError, PermissionError):
        return True
    except (ImportError, OSError):
        pid, host = _holder(os.read(fd, 256).decode("utf-8", "replace"))
        return pid is not None and host == socket.gethostname() and _pid_alive(pid)
    finally:
        os.close(fd)
    return False
