"""The run store: one directory per run, holding an SQLite database, the clips, a manifest and exports.

    RUN_DIR/
      run.sqlite        runs, items, clips, scores, errors
      manifest.json     git commit, package versions, suite hash, adapter configs, seeds, weight sha256s
      clips/<model>/<item id>-s<seed>.mp4
      exports/          scores.parquet, scores.csv, results.json (written by `export`)

Caching is by content. A clip is regenerated only when its generation key (adapter config × item content × seed)
changes; a score is recomputed only when its key (clip sha256 × metric × metric version × metric config) is new.
Every write is one SQLite transaction and every file is written under a temporary name and renamed, so a run
killed at any point resumes without losing or duplicating work.
"""
from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from mheval.files import write_json_atomic

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT,
    started REAL NOT NULL,
    finished REAL,
    suite TEXT NOT NULL,
    suite_hash TEXT NOT NULL,
    models TEXT NOT NULL,          -- JSON list of model labels in this invocation
    argv TEXT NOT NULL,
    manifest TEXT NOT NULL         -- JSON, also written to manifest.json
);
CREATE TABLE IF NOT EXISTS items (
    suite TEXT NOT NULL,
    item_id TEXT NOT NULL,
    item_hash TEXT NOT NULL,
    language TEXT NOT NULL,
    seconds REAL NOT NULL,
    reference_text TEXT NOT NULL,
    prompt TEXT NOT NULL,
    PRIMARY KEY (suite, item_id)
);
CREATE TABLE IF NOT EXISTS clips (
    model TEXT NOT NULL,
    suite TEXT NOT NULL,
    item_id TEXT NOT NULL,
    seed INTEGER NOT NULL,
    generation_key TEXT NOT NULL,  -- adapter config hash x item hash x seed
    status TEXT NOT NULL,          -- 'ok' | 'failed'
    path TEXT,                     -- relative to the run directory
    sha256 TEXT,
    meta TEXT NOT NULL,            -- JSON from the adapter: timings per stage, notices, ...
    error TEXT,
    created REAL NOT NULL,
    PRIMARY KEY (model, suite, item_id, seed)
);
CREATE TABLE IF NOT EXISTS scores (
    clip_sha256 TEXT NOT NULL,
    metric TEXT NOT NULL,
    metric_version TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    status TEXT NOT NULL,          -- 'ok' | 'failed' | 'not_applicable'
    fields TEXT NOT NULL,          -- JSON {field: value}
    detail TEXT,                   -- JSON or text: transcript, reason for n/a, error message
    created REAL NOT NULL,
    PRIMARY KEY (clip_sha256, metric, metric_version, config_hash)
);
CREATE TABLE IF NOT EXISTS errors (
    error_id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id INTEGER,
    created REAL NOT NULL,
    model TEXT,
    item_id TEXT,
    stage TEXT NOT NULL,           -- 'generate' | 'metric:<name>' | 'run'
    message TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class ClipRecord:
    model: str
    suite: str
    item_id: str
    seed: int
    generation_key: str
    status: str
    path: str | None
    sha256: str | None
    meta: dict[str, Any]
    error: str | None


class RunStore:
    def __init__(self, directory: Path | str):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.db_path = self.directory / "run.sqlite"
        self._db = sqlite3.connect(self.db_path, timeout=60, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    @classmethod
    def open_existing(cls, directory: Path | str) -> "RunStore":
        directory = Path(directory)
        if not (directory / "run.sqlite").exists():
            raise FileNotFoundError(f"{directory}: not a run directory (no run.sqlite)")
        return cls(directory)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def clip_path(self, model: str, item_id: str, seed: int) -> Path:
        return self.directory / "clips" / model / f"{item_id}-s{seed}.mp4"

    # -- runs -----------------------------------------------------------------------------------------------------

    def begin_run(self, suite: str, suite_hash: str, models: list[str], argv: list[str], manifest: dict) -> int:
        write_json_atomic(self.directory / "manifest.json", manifest)
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO runs (started, suite, suite_hash, models, argv, manifest) VALUES (?,?,?,?,?,?)",
                (time.time(), suite, suite_hash, json.dumps(models), json.dumps(argv), json.dumps(manifest)),
            )
            return int(cursor.lastrowid)

    def finish_run(self, run_id: int) -> None:
        with self._transaction() as db:
            db.execute("UPDATE runs SET finished = ? WHERE run_id = ?", (time.time(), run_id))

    def runs(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM runs ORDER BY run_id", self._db)

    def manifest(self) -> dict[str, Any]:
        path = self.directory / "manifest.json"
        return json.loads(path.read_text()) if path.exists() else {}

    # -- items ----------------------------------------------------------------------------------------------------

    def put_items(self, suite: str, items: list) -> None:
        rows = [
            (suite, item.id, item.content_hash(), item.language, item.seconds, item.reference_text, item.prompt)
            for item in items
        ]
        with self._transaction() as db:
            db.executemany("INSERT OR REPLACE INTO items VALUES (?,?,?,?,?,?,?)", rows)

    def items(self, suite: str | None = None) -> pd.DataFrame:
        query, params = "SELECT * FROM items", ()
        if suite is not None:
            query, params = query + " WHERE suite = ?", (suite,)
        return pd.read_sql_query(query + " ORDER BY suite, item_id", self._db, params=params)

    # -- clips ----------------------------------------------------------------------------------------------------

    def get_clip(self, model: str, suite: str, item_id: str, seed: int) -> ClipRecord | None:
        row = self._db.execute(
            "SELECT model, suite, item_id, seed, generation_key, status, path, sha256, meta, error FROM clips "
            "WHERE model = ? AND suite = ? AND item_id = ? AND seed = ?",
            (model, suite, item_id, seed),
        ).fetchone()
        if row is None:
            return None
        return ClipRecord(*row[:8], meta=json.loads(row[8]), error=row[9])

    def put_clip(self, record: ClipRecord) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO clips VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (record.model, record.suite, record.item_id, record.seed, record.generation_key, record.status,
                 record.path, record.sha256, json.dumps(record.meta, default=str), record.error, time.time()),
            )

    def clips(self, suite: str | None = None, models: list[str] | None = None) -> pd.DataFrame:
        frame = pd.read_sql_query("SELECT * FROM clips ORDER BY model, suite, item_id, seed", self._db)
        if suite is not None:
            frame = frame[frame.suite == suite]
        if models is not None:
            frame = frame[frame.model.isin(models)]
        return frame.reset_index(drop=True)

    # -- scores ---------------------------------------------------------------------------------------------------

    def has_score(self, clip_sha256: str, metric: str, version: str, config_hash: str) -> bool:
        return self._db.execute(
            "SELECT 1 FROM scores WHERE clip_sha256=? AND metric=? AND metric_version=? AND config_hash=?",
            (clip_sha256, metric, version, config_hash),
        ).fetchone() is not None

    def put_score(self, clip_sha256: str, metric: str, version: str, config_hash: str, status: str,
                  fields: dict[str, Any], detail: Any = None) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO scores VALUES (?,?,?,?,?,?,?,?)",
                (clip_sha256, metric, version, config_hash, status, json.dumps(fields, default=float),
                 json.dumps(detail, default=str, ensure_ascii=False), time.time()),
            )

    def scores(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM scores", self._db)

    # -- errors ---------------------------------------------------------------------------------------------------

    def log_error(self, run_id: int | None, stage: str, message: str, model: str | None = None,
                  item_id: str | None = None) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO errors (run_id, created, model, item_id, stage, message) VALUES (?,?,?,?,?,?)",
                (run_id, time.time(), model, item_id, stage, message),
            )

    def errors(self, run_id: int | None = None) -> pd.DataFrame:
        query, params = "SELECT * FROM errors", ()
        if run_id is not None:
            query, params = query + " WHERE run_id = ?", (run_id,)
        return pd.read_sql_query(query + " ORDER BY error_id", self._db, params=params)
