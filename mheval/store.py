"""The run store: one directory per run, holding an SQLite database, the clips, a manifest and exports.

    RUN_DIR/
      run.sqlite        runs (invocations), items, clips, scores, errors
      manifest.json     git commit, package versions, suite hash, adapter configs, seeds, weight sha256s
      clips/<model>/<item id>-s<seed>.mp4
      exports/          clips/summary .parquet and .csv, results.json (written by `mheval.results.export`)

Caching is by content. A clip is regenerated only when its generation key changes (adapter config × item content ×
seed × whatever else the adapter declares its clip depends on, e.g. the source file's sha256 for `clips:`). A score
is recomputed only when its score key is new: clip sha256 × item content hash × metric name × metric version ×
metric config hash × sha256 of every weight file the metric reads (`MetricKey.score_key`). Scores are joined to
clips on that same key, so a score is never shown for an item or a model it was not computed for.

Each invocation of `mheval run` is a row of `runs` that records what it asked for (suite and its hash, seed,
models, the generation key it expects for every model × item, the metric keys): readers show that invocation's
clips and scores only (`RunStore.latest_run`), never leftovers of earlier configurations.

Every write is one SQLite transaction and every file is written under a temporary name and renamed, so a run
killed at any point resumes without losing or duplicating work.

Schema versions: 2 (this one). A store of schema 1 (scores keyed by clip bytes alone) is migrated when `mheval run`
writes into it: clips are kept, scores are dropped and recomputed, since they cannot be told apart by item. Readers
(report, gate, dashboard) refuse a schema-1 store with a message saying so.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import sys
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from mheval.database import connect, transaction
from mheval.files import write_json_atomic
from mheval.registry import config_hash
from mheval.status import Status

SCHEMA_VERSION = 2
DATABASE = "run.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT,
    started REAL NOT NULL,
    finished REAL,
    suite TEXT NOT NULL,
    suite_hash TEXT NOT NULL,
    models TEXT NOT NULL,          -- JSON list of model labels in this invocation
    argv TEXT NOT NULL,
    manifest TEXT NOT NULL,        -- JSON, also written to manifest.json
    seed INTEGER,                  -- (nullable only for rows migrated from schema 1)
    clips TEXT,                    -- JSON {model: {item id: generation key}}: the clips this invocation asked for
    metrics TEXT                   -- JSON list of metric keys [name, version, config hash, weights hash] it scored
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
    generation_key TEXT NOT NULL,  -- see runner.generation_key
    status TEXT NOT NULL,          -- 'ok' | 'failed'
    path TEXT,                     -- relative to the run directory
    sha256 TEXT,
    meta TEXT NOT NULL,            -- JSON from the adapter: timings per stage, notices, ...
    error TEXT,
    created REAL NOT NULL,
    item_hash TEXT,                -- content hash of the item the clip was made for
    PRIMARY KEY (model, suite, item_id, seed)
);
CREATE TABLE IF NOT EXISTS scores (
    score_key TEXT PRIMARY KEY,    -- MetricKey.score_key: sha256 over the six columns below
    clip_sha256 TEXT NOT NULL,
    item_hash TEXT NOT NULL,
    metric TEXT NOT NULL,
    metric_version TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    weights_hash TEXT NOT NULL,
    status TEXT NOT NULL,          -- 'ok' | 'failed' | 'not_applicable'
    fields TEXT NOT NULL,          -- JSON {field: value}
    detail TEXT,                   -- JSON or text: transcript, reason for n/a, error message
    created REAL NOT NULL
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

CLIP_COLUMNS = ("model", "suite", "item_id", "seed", "generation_key", "status", "path", "sha256", "meta", "error",
                "created", "item_hash")


class OldStoreError(ValueError):
    """A run directory written by an earlier store schema, which a reader cannot show without mis-joining."""


@dataclass(frozen=True)
class MetricKey:
    """Everything a metric's number depends on besides the clip and the item: name, version, config, weights."""

    name: str
    version: str
    config_hash: str
    weights_hash: str  # over the sha256 of every weight file the metric reads (`Metric.weights()`)

    @classmethod
    def of(cls, metric) -> "MetricKey":
        weights = sorted(weight.sha256 for weight in metric.weights())
        return cls(metric.name, metric.version, metric.config_hash(), config_hash({"weights": weights}))

    def score_key(self, clip_sha256: str, item_hash: str) -> str:
        """The key of this metric's score of one clip made for one item (both hashes are of content)."""
        parts = [clip_sha256, item_hash, self.name, self.version, self.config_hash, self.weights_hash]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


@dataclass(frozen=True)
class ClipRecord:
    model: str
    suite: str
    item_id: str
    seed: int
    generation_key: str
    item_hash: str
    status: Status
    path: str | None
    sha256: str | None
    meta: dict[str, Any]
    error: str | None


@dataclass(frozen=True)
class RunRecord:
    """One invocation of `mheval run` and what it asked for; readers show exactly its clips and scores."""

    run_id: int
    started: float
    finished: float | None
    suite: str
    suite_hash: str
    seed: int
    clips: dict[str, dict[str, str]]   # model -> item id -> generation key expected
    metric_keys: list[MetricKey]
    manifest: dict[str, Any]

    @property
    def models(self) -> list[str]:
        return list(self.clips)

    @property
    def item_ids(self) -> list[str]:
        return list(dict.fromkeys(item for items in self.clips.values() for item in items))

    def describe(self) -> str:
        """Which clips the numbers come from, for the top of a report or gate output."""
        return (f"run {self.run_id} · suite {self.suite} (sha256 {self.suite_hash[:12]}) · seed {self.seed} · "
                f"{len(self.item_ids)} prompt(s) × {len(self.models)} model(s)")

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "suite": self.suite, "suite_sha256": self.suite_hash, "seed": self.seed,
                "models": self.models, "items": self.item_ids, "finished": self.finished is not None}


class RunStore:
    """A run directory. `RunStore(dir)` creates or opens it for writing (migrating an older schema);
    `RunStore.open_existing(dir)` opens it for reading."""

    def __init__(self, directory: Path | str, migrate: bool = True):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.db_path = self.directory / DATABASE
        self._db = connect(self.db_path)
        version = self._schema_version()
        if version not in (0, SCHEMA_VERSION):
            self._db.close()
            raise OldStoreError(f"{self.db_path}: store schema {version}; this mheval reads schema {SCHEMA_VERSION} "
                                "(written by a newer mheval?)")
        if version == 0 and self._has_table("scores"):
            if not migrate:
                self._db.close()
                raise OldStoreError(
                    f"{self.db_path} was written by an earlier mheval (store schema 1), whose scores are keyed by "
                    "clip bytes alone and cannot be matched to items safely. Run `mheval run` with the same "
                    f"--out {self.directory} to migrate it (clips are kept, scores are recomputed).")
            self._migrate_from_1()
        self._db.executescript(SCHEMA)
        self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @classmethod
    def open_existing(cls, directory: Path | str) -> "RunStore":
        directory = Path(directory)
        if not (directory / DATABASE).exists():
            raise FileNotFoundError(f"{directory}: not a run directory (no run.sqlite)")
        return cls(directory, migrate=False)

    def _schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _has_table(self, name: str) -> bool:
        return self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                                (name,)).fetchone() is not None

    def _migrate_from_1(self) -> None:
        """Schema 1 → 2: runs and clips gain columns (clips take their item's hash from the items table); scores,
        keyed by clip bytes alone, are dropped and will be recomputed."""
        with self._transaction() as db:
            dropped = db.execute("SELECT COUNT(*) FROM scores").fetchone()[0]
            for column in ("seed INTEGER", "clips TEXT", "metrics TEXT"):
                db.execute(f"ALTER TABLE runs ADD COLUMN {column}")
            db.execute("ALTER TABLE clips ADD COLUMN item_hash TEXT")
            db.execute("UPDATE clips SET item_hash = (SELECT item_hash FROM items WHERE items.suite = clips.suite "
                       "AND items.item_id = clips.item_id)")
            db.execute("DROP TABLE scores")  # recreated by the caller with the schema-2 columns
        print(f"mheval: migrated {self.db_path} from store schema 1 to {SCHEMA_VERSION}: clips kept, {dropped} "
              "score(s) dropped (they were keyed by clip bytes alone) and recomputed by this run", file=sys.stderr)

    def close(self) -> None:
        self._db.close()

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return transaction(self._db)

    def clip_path(self, model: str, item_id: str, seed: int) -> Path:
        return self.directory / "clips" / model / f"{item_id}-s{seed}.mp4"

    # -- runs -----------------------------------------------------------------------------------------------------

    def begin_run(self, suite: str, suite_hash: str, seed: int, clips: dict[str, dict[str, str]],
                  metric_keys: list[MetricKey], argv: list[str], manifest: dict) -> RunRecord:
        """Record an invocation: `clips` maps each model label to {item id: generation key} it asks for."""
        write_json_atomic(self.directory / "manifest.json", manifest)
        started = time.time()
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO runs (started, suite, suite_hash, models, argv, manifest, seed, clips, metrics) "
                "VALUES (?,?,?,?,?,?,?,?,?)",
                (started, suite, suite_hash, json.dumps(list(clips)), json.dumps(argv), json.dumps(manifest),
                 seed, json.dumps(clips), json.dumps([list(key.__dict__.values()) for key in metric_keys])),
            )
        return RunRecord(int(cursor.lastrowid), started, None, suite, suite_hash, seed, clips, metric_keys, manifest)

    def finish_run(self, run: RunRecord) -> RunRecord:
        finished = time.time()
        with self._transaction() as db:
            db.execute("UPDATE runs SET finished = ? WHERE run_id = ?", (finished, run.run_id))
        return replace(run, finished=finished)

    def runs(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM runs ORDER BY run_id", self._db)

    def latest_run(self) -> RunRecord | None:
        """The latest invocation (None before the first): what report, gate, exports and dashboard show."""
        row = self._db.execute(
            "SELECT run_id, started, finished, suite, suite_hash, seed, clips, metrics, manifest FROM runs "
            "WHERE clips IS NOT NULL ORDER BY run_id DESC LIMIT 1").fetchone()
        if row is None:
            return None
        run_id, started, finished, suite, suite_hash, seed, clips, metrics, manifest = row
        return RunRecord(run_id, started, finished, suite, suite_hash, seed, json.loads(clips),
                         [MetricKey(*key) for key in json.loads(metrics)], json.loads(manifest))

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
            "SELECT model, suite, item_id, seed, generation_key, item_hash, status, path, sha256, meta, error "
            "FROM clips WHERE model = ? AND suite = ? AND item_id = ? AND seed = ?",
            (model, suite, item_id, seed),
        ).fetchone()
        if row is None:
            return None
        names = ("model", "suite", "item_id", "seed", "generation_key", "item_hash", "status", "path", "sha256")
        values = dict(zip(names, row[:9]))
        return ClipRecord(**{**values, "status": Status(values["status"])}, meta=json.loads(row[9]), error=row[10])

    def put_clip(self, record: ClipRecord) -> None:
        values = {**record.__dict__, "meta": json.dumps(record.meta, default=str), "created": time.time()}
        with self._transaction() as db:
            db.execute(f"INSERT OR REPLACE INTO clips ({', '.join(CLIP_COLUMNS)}) "
                       f"VALUES ({', '.join('?' * len(CLIP_COLUMNS))})", [values[name] for name in CLIP_COLUMNS])

    def clips(self, suite: str | None = None, models: list[str] | None = None) -> pd.DataFrame:
        frame = pd.read_sql_query("SELECT * FROM clips ORDER BY model, suite, item_id, seed", self._db)
        if suite is not None:
            frame = frame[frame.suite == suite]
        if models is not None:
            frame = frame[frame.model.isin(models)]
        return frame.reset_index(drop=True)

    def run_clips(self, run: RunRecord) -> pd.DataFrame:
        """The stored clips an invocation asked for (its suite, seed, models and items). `stale` marks a clip made
        under another generation key: an earlier configuration that this invocation has not (yet) regenerated."""
        frame = self.clips(run.suite, run.models)
        frame = frame[frame.seed == run.seed]
        expected = pd.Series([run.clips[model].get(item) for model, item in zip(frame.model, frame.item_id)],
                             index=frame.index, dtype=object)
        frame = frame[expected.notna()].copy()
        frame["stale"] = frame.generation_key != expected[expected.notna()]
        return frame.reset_index(drop=True)

    # -- scores ---------------------------------------------------------------------------------------------------

    def has_score(self, score_key: str) -> bool:
        return self._db.execute("SELECT 1 FROM scores WHERE score_key = ?", (score_key,)).fetchone() is not None

    def put_score(self, key: MetricKey, clip_sha256: str, item_hash: str, status: Status, fields: dict[str, Any],
                  detail: Any = None) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO scores VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (key.score_key(clip_sha256, item_hash), clip_sha256, item_hash, key.name, key.version,
                 key.config_hash, key.weights_hash, status, json.dumps(fields, default=float),
                 json.dumps(detail, default=str, ensure_ascii=False), time.time()),
            )

    def scores(self, keys: list[MetricKey] | None = None) -> pd.DataFrame:
        """Stored scores, optionally only those of the given metric keys."""
        frame = pd.read_sql_query("SELECT * FROM scores", self._db)
        if keys is not None:
            wanted = {(k.name, k.version, k.config_hash, k.weights_hash) for k in keys}
            keep = [row in wanted for row in zip(frame.metric, frame.metric_version, frame.config_hash,
                                                 frame.weights_hash)]
            frame = frame[pd.Series(keep, index=frame.index, dtype=bool)]
        return frame.reset_index(drop=True)

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
