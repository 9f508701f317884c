"""SQLite as mheval's stores use it (the run store, a review study): WAL mode, writes in explicit transactions."""
from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


def connect(path: str | Path, **options: Any) -> sqlite3.Connection:
    """A connection in WAL mode (readers never block the writer) that commits only when told to."""
    db = sqlite3.connect(path, timeout=60, isolation_level=None, **options)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    return db


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One atomic write. BEGIN IMMEDIATE takes the write lock up front, so concurrent writers queue instead of
    failing half-way; nested use joins the outer transaction."""
    if db.in_transaction:
        yield db
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
