"""Files: the one sha256 hasher (with a cache for files hashed again and again) and the one atomic writer.

`sha256_file` always reads the file. `sha256_file_cached` reads it only when the file changed since it was last
hashed on this machine: the hash is kept in `$MHEVAL_CACHE/file-sha256.sqlite` (default `~/.cache/mheval`) with the
file's size, modification time, status-change time and inode. Any write to a file changes its ctime, which no
program can set back, so a file rewritten in place is always hashed again. Weight files (GBs) and clips brought in
from elsewhere are hashed through the cache, so a re-run does not read them again.

`write_atomically` writes under a temporary name in the target's directory, flushes to disk and renames, so a
reader (or a run killed half-way) sees the old file or the new one, never a torn one.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Callable, Iterator

HASH_CACHE_NAME = "file-sha256.sqlite"


def cache_root() -> Path:
    """mheval's cache directory: `$MHEVAL_CACHE`, or `~/.cache/mheval`."""
    return Path(os.environ.get("MHEVAL_CACHE") or Path.home() / ".cache" / "mheval")


def sha256_file(path: str | Path) -> str:
    """sha256 of the file's bytes, read now."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def sha256_file_cached(path: str | Path) -> str:
    """sha256 of the file's bytes, read only when its size, mtime, ctime or inode changed since it was last hashed."""
    path = Path(path).resolve()
    status = path.stat()
    stamp = (status.st_size, status.st_mtime_ns, status.st_ctime_ns, status.st_ino)
    try:
        with _hash_cache() as db:
            row = db.execute("SELECT size, mtime_ns, ctime_ns, inode, sha256 FROM hashes WHERE path = ?",
                             (str(path),)).fetchone()
    except (sqlite3.Error, OSError):
        row = None  # an unwritable or broken cache only costs time
    if row is not None and tuple(row[:4]) == stamp:
        return row[4]
    digest = sha256_file(path)
    try:
        with _hash_cache() as db:
            db.execute("INSERT OR REPLACE INTO hashes VALUES (?,?,?,?,?,?)", (str(path), *stamp, digest))
    except (sqlite3.Error, OSError):
        pass
    return digest


@contextmanager
def _hash_cache() -> Iterator[sqlite3.Connection]:
    """A short-lived connection to the hash cache, committed on success."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(root / HASH_CACHE_NAME, timeout=30)
    try:
        db.execute("CREATE TABLE IF NOT EXISTS hashes (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, "
                   "ctime_ns INTEGER, inode INTEGER, sha256 TEXT NOT NULL)")
        yield db
        db.commit()
    finally:
        db.close()


def write_atomically(path: str | Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Call `write` with a binary handle on a temporary file next to `path`, flush it to disk, rename it to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")  # unique: concurrent writers never collide
    try:
        with open(partial, "xb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    write_atomically(path, lambda handle: handle.write(data))


def write_json_atomic(path: str | Path, payload: Any) -> None:
    write_bytes_atomic(path, json.dumps(payload, indent=2, default=str, ensure_ascii=False).encode())
