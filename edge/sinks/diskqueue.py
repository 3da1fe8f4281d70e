"""A bounded first-in first-out queue of byte strings in one SQLite file (the standard library's sqlite3).

Messages survive a restart of the process: the MQTT sink puts every message here first and deletes it
only when the broker has acknowledged it. When the queue holds ``max_items``, putting one more drops the
oldest (counted in :attr:`DiskQueue.dropped`). Safe to use from two threads (one lock, one connection).
The journal is SQLite's write-ahead log with ``synchronous=NORMAL``: a crash of the process loses
nothing that ``put`` returned from; a power cut may lose the last moments.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from edge.errors import SourceError


class DiskQueue:
    def __init__(self, path: Path, max_items: int) -> None:
        self.path = path
        self.max_items = max_items
        self.dropped = 0  # since this object was made
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS queue (id INTEGER PRIMARY KEY AUTOINCREMENT, body BLOB NOT NULL)"
            )
            self._count = int(self._db.execute("SELECT COUNT(*) FROM queue").fetchone()[0])
        except (OSError, sqlite3.Error) as exc:
            raise SourceError(f"cannot open the message queue {path}: {exc}") from None

    def __len__(self) -> int:
        return self._count

    def put(self, body: bytes) -> int:
        """Append ``body``; the number of oldest messages dropped to make room (0 almost always)."""
        with self._lock:
            self._db.execute("INSERT INTO queue (body) VALUES (?)", (body,))
            self._count += 1
            over = self._count - self.max_items
            if over > 0:
                cur = self._db.execute(
                    "DELETE FROM queue WHERE id IN (SELECT id FROM queue ORDER BY id LIMIT ?)", (over,)
                )
                self._count -= cur.rowcount
                self.dropped += cur.rowcount
                return cur.rowcount
        return 0

    def peek(self, after: int, limit: int) -> list[tuple[int, bytes]]:
        """Up to ``limit`` messages with ids above ``after``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, body FROM queue WHERE id > ? ORDER BY id LIMIT ?", (after, limit)
            ).fetchall()
        return [(int(i), bytes(b)) for i, b in rows]

    def delete(self, ids: list[int]) -> None:
        if not ids:
            return
        with self._lock:
            cur = self._db.executemany("DELETE FROM queue WHERE id = ?", [(i,) for i in ids])
            self._count -= cur.rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()
