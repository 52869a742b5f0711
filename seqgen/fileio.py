"""Atomic file writes: write to a temporary file in the same directory, fsync, then rename.

A reader (or a crash at any moment) sees either the old file or the complete new one, never half
of one. Every file seqgen writes for the user goes through here.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from seqgen.errors import SeqgenError


class WriteError(SeqgenError):
    """A file could not be written (missing directory, read-only or full disk)."""

    exit_code = 1


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is fsynced and renamed over `path`.

    On any error the temporary file is removed and `path` is left as it was.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        # mkstemp creates the file 0600; give it the mode an ordinary open() would (0666 - umask).
        os.chmod(tmp_name, 0o666 & ~_umask())
    except OSError as e:
        raise WriteError(f"cannot write {path}: {e.strerror or e}") from e
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
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
