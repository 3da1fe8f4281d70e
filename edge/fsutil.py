"""Atomic file writes: the one implementation every writer in the kit uses.

A reader never sees a half-written file: data goes to a temp file in the same directory, is flushed
(and, with ``fsync=True``, synced), then renamed over the target. On any failure, interruption included,
the temp file is removed and the target is left as it was.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(
    path: str | os.PathLike[str],
    data: bytes | bytearray | memoryview | str,
    *,
    mode: int | None = None,
    fsync: bool = False,
) -> Path:
    """Write ``data`` (bytes, or str as UTF-8) to ``path`` atomically; ``mode`` sets the file's permissions.

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
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
