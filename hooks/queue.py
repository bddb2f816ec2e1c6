"""A durable work queue on sqlite: idempotent by key, retries with exponential backoff, survives restarts."""
from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

SCHEMA = """CREATE TABLE IF NOT EXISTS jobs (
  key TEXT PRIMARY KEY, payload TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'pending',
  attempts INTEGER NOT NULL DEFAULT 0, next_at REAL NOT NULL DEFAULT 0, error TEXT, updated REAL NOT NULL)"""


class Queue:
    """Jobs are pending -> running -> done | dead; a running job whose lease expired is pending again."""

    def __init__(self, path: str | Path, max_attempts: int = 5, lease_s: float = 600.0,
                 backoff_s: float = 2.0) -> None:
        self.path = str(path)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.max_attempts, self.lease_s, self.backoff_s = max_attempts, lease_s, backoff_s
        with self._db() as db:
            db.execute(SCHEMA)

    def _db(self) -> sqlite3.Connection:
        # One short-lived connection per call: safe across threads and processes (receiver + worker).
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        return db

    def enqueue(self, key: str, payload: dict[str, Any]) -> bool:
        """Add a job; False if the key was already queued (a duplicate delivery)."""
        with self._db() as db:
            cur = db.execute("INSERT OR IGNORE INTO jobs(key, payload, updated) VALUES (?, ?, ?)",
                             (key, json.dumps(payload), time.time()))
            return cur.rowcount == 1

    def claim(self) -> tuple[str, dict[str, Any]] | None:
        """Take the next due job (or one whose worker died holding it)."""
        now = time.time()
        db = self._db()
        try:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT key, payload FROM jobs WHERE (status='pending' AND next_at<=?) OR "
                             "(status='running' AND updated<?) ORDER BY updated LIMIT 1",
                             (now, now - self.lease_s)).fetchone()
            if row is not None:
                db.execute("UPDATE jobs SET status='running', attempts=attempts+1, updated=? WHERE key=?",
                           (now, row[0]))
            db.execute("COMMIT")
        finally:
            db.close()
        return (row[0], json.loads(row[1])) if row else None

    def done(self, key: str) -> None:
        with self._db() as db:
            db.execute("UPDATE jobs SET status='done', error=NULL, updated=? WHERE key=?", (time.time(), key))

    def fail(self, key: str, error: str) -> None:
        """Retry later with exponential backoff, or give up after ``max_attempts``."""
        with self._db() as db:
            (attempts,) = db.execute("SELECT attempts FROM jobs WHERE key=?", (key,)).fetchone()
            status = "dead" if attempts >= self.max_attempts else "pending"
            delay = min(300.0, self.backoff_s * 2 ** (attempts - 1))
            db.execute("UPDATE jobs SET status=?, error=?, next_at=?, updated=? WHERE key=?",
                       (status, error[:500], time.time() + delay, time.time(), key))

    def recover(self) -> int:
        """At start-up: jobs left 'running' by a dead worker become pending again."""
        with self._db() as db:
            return db.execute("UPDATE jobs SET status='pending', next_at=0 WHERE status='running'").rowcount

    def counts(self) -> dict[str, int]:
        with self._db() as db:
            return dict(db.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall())

    def has_open(self, prefix: str) -> bool:
        """Whether a pending or running job's key starts with ``prefix`` (e.g. one version from any source)."""
        with self._db() as db:
            row = db.execute("SELECT 1 FROM jobs WHERE substr(key, 1, ?) = ? AND status IN ('pending', 'running') "
                             "LIMIT 1", (len(prefix), prefix)).fetchone()
            return row is not None

    def status(self, key: str) -> str | None:
        with self._db() as db:
            row = db.execute("SELECT status FROM jobs WHERE key=?", (key,)).fetchone()
            return row[0] if row else None
