"""Atomic file writes: the one implementation every writer in the kit uses.

A reader never sees a half-written file: data goes to a temp file in the same directory, is flushed
(and, with ``fsync=True``, synced), then renamed over the target. On any failure, interruption included,
the temp file is removed and the target is left as it was.

Permissions are those a plain ``open(path, "w")`` would give: an existing target keeps its mode, a new
file gets ``0o666`` minus the process umask (``mkstemp`` alone would make every file ``0600``);
``mode=`` overrides both.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path


def atomic_write(
    path: str | os.PathLike[str],
    data: bytes | bytearray | memoryview | str,
    *,
    mode: int | None = None,
    fsync: bool = False,
) -> Path:
    """Write ``data`` (bytes, or str as UTF-8) to ``path`` atomically; ``mode`` sets the file's permissions
    (default: the existing file's, else ``0o666`` minus the umask, as ``open()`` would).

    Raises ``OSError`` as the file system reports it; callers turn it into their own EdgeError.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.chmod(tmp, mode if mode is not None else _default_mode(target))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def current_umask() -> int:
    """The process umask, read from /proc where it can be (changing it to read it races with other threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def _default_mode(target: Path) -> int:
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except OSError:
        return 0o666 & ~current_umask()
