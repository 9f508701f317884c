"""A study's database: one SQLite file (WAL) in the study directory, the only place that knows which model made a clip.

    STUDY_DIR/
      study.sqlite      study settings, items, clips (model known here only), pairs, raters (token hashes),
                        trials (each rater's queue, left/right logged), choices (drafts), votes, media grants
      media/<random>.mp4  all of one length (`even_out_media`)
      review.log        the server's log: refused sign-ins with the address they came from

Every write is one `BEGIN IMMEDIATE` transaction, so concurrent app sessions and processes never interleave half a
vote. A vote's key is (trial, criterion) and a trial belongs to one rater, so a double submit stores one vote.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import secrets
import sqlite3
import struct
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mheval.database import connect, transaction

DATABASE = "study.sqlite"
MEDIA = "media"
STUDY_ENV = "MHEVAL_REVIEW_STUDY"     # how `mheval review serve` tells the app which study it serves
GRANT_SECONDS_ENV = "MHEVAL_REVIEW_GRANT_SECONDS"   # and how long a media grant lasts
# A grant opens its clip only while its trial is the rater's current one and at most this long after it was issued
# (a page left open longer gets a new grant on its next rerun), so a leaked media URL soon opens nothing.
DEFAULT_GRANT_SECONDS = 1800.0
LOG_FILE = "review.log"
MEDIA_ROUTE = "review-media"          # URL prefix of the media endpoint (mheval/review/server.py)
VERDICTS = ("left", "tie", "right")
CLOCK_SLACK = 1e-3                    # seconds; float rounding of timestamps, not a grace period
GRANT_PATTERN = re.compile(r"[A-Za-z0-9_-]{32}")
# Tokens carry 144 random bits, so guessing is hopeless anyway; the limit keeps a script from hammering the sign-in
# (and the database) and shows up in the log. Per client address: the socket's peer, or the address a trusted proxy
# (`mheval review serve --trusted-proxy`) forwarded; behind an untrusted proxy every rater shares the proxy's.
SIGN_IN_FAILURES_ALLOWED = 10
SIGN_IN_WINDOW_SECONDS = 600.0
# The criteria a study can ask, in the order the app shows them; `mheval review create --criteria` picks a subset.
CRITERION_LABELS = {
    "overall": "Overall preference",
    "lip_sync": "Lip sync",
    "visual_quality": "Visual quality",
    "speech_naturalness": "Speech naturalness",
}

SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);   -- JSON values
CREATE TABLE IF NOT EXISTS items (
    item_id TEXT PRIMARY KEY,
    language TEXT NOT NULL,
    scene TEXT NOT NULL,           -- the prompt's main body
    spoken TEXT NOT NULL           -- the line the person says
);
CREATE TABLE IF NOT EXISTS clips (
    clip_id TEXT PRIMARY KEY,      -- opaque random
    media_name TEXT UNIQUE NOT NULL,  -- opaque random file name under media/
    model TEXT NOT NULL,
    item_id TEXT NOT NULL,
    variant TEXT NOT NULL,         -- 'original' | 'audio_shift' | 'frozen_video'
    source_path TEXT NOT NULL,     -- the run's clip it was made from
    source_sha256 TEXT NOT NULL,   -- joins the run's automatic metric scores
    seconds REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS pairs (
    pair_id INTEGER PRIMARY KEY,
    item_id TEXT NOT NULL,
    clip_a TEXT NOT NULL,          -- canonical order: the study's model order
    clip_b TEXT NOT NULL,
    kind TEXT NOT NULL,            -- 'real' | 'catch'
    catch_type TEXT,               -- 'audio_shift' | 'frozen_video' | 'identical'
    expected TEXT,                 -- JSON {criterion: 'a' | 'b' | 'tie'} for catch pairs
    first_left TEXT NOT NULL       -- 'a' | 'b': the side order of the pair's first showing; then alternating
);
CREATE TABLE IF NOT EXISTS raters (
    rater_id INTEGER PRIMARY KEY,
    name TEXT UNIQUE NOT NULL,
    token_sha256 TEXT UNIQUE NOT NULL,
    languages TEXT NOT NULL,       -- JSON list
    created REAL NOT NULL,
    revoked REAL
);
CREATE TABLE IF NOT EXISTS trials (
    trial_id TEXT PRIMARY KEY,     -- opaque random
    rater_id INTEGER NOT NULL,
    position INTEGER NOT NULL,     -- 1-based place in the rater's queue
    slot TEXT NOT NULL,            -- 'real' | 'catch' | 'repeat'
    pair_id INTEGER,               -- NULL until filled (adaptive real slots, repeat slots)
    left_clip TEXT,
    right_clip TEXT,
    repeat_of TEXT,                -- the earlier trial this one repeats with sides swapped
    sampling TEXT,                 -- JSON: how the pair was chosen
    served_at REAL,                -- first shown to the rater (server clock)
    submitted_at REAL,
    UNIQUE (rater_id, position)
);
CREATE TABLE IF NOT EXISTS choices (
    trial_id TEXT NOT NULL,
    criterion TEXT NOT NULL,
    verdict TEXT NOT NULL,
    chosen_at REAL NOT NULL,
    PRIMARY KEY (trial_id, criterion)
);
CREATE TABLE IF NOT EXISTS votes (
    trial_id TEXT NOT NULL,
    criterion TEXT NOT NULL,
    rater_id INTEGER NOT NULL,
    verdict TEXT NOT NULL,         -- 'left' | 'tie' | 'right'
    cast_at REAL NOT NULL,
    PRIMARY KEY (trial_id, criterion)
);
CREATE TABLE IF NOT EXISTS grants (
    grant_token TEXT PRIMARY KEY,  -- the random part of a media URL
    trial_id TEXT NOT NULL,
    side TEXT NOT NULL,            -- 'left' | 'right'
    issued_at REAL NOT NULL,       -- server clock; the grant lapses `grant_seconds` later
    UNIQUE (trial_id, side)
);
CREATE TABLE IF NOT EXISTS sign_in_failures (
    client TEXT NOT NULL,          -- the address the attempt came from ('' when unknown)
    failed_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS trials_by_rater ON trials (rater_id, position);
CREATE INDEX IF NOT EXISTS trials_by_pair ON trials (pair_id);
"""


class StudyError(ValueError):
    """A study, rater or token that cannot be used; the message says why (never a model or a path)."""


class VoteRefused(Exception):
    """A submission the study does not accept; `reason` is safe to show the rater."""

    def __init__(self, reason: str, seconds_left: float = 0.0):
        super().__init__(reason)
        self.reason = reason
        self.seconds_left = seconds_left


@dataclass(frozen=True)
class Rater:
    rater_id: int
    name: str
    languages: tuple[str, ...]
    revoked: bool


@dataclass(frozen=True)
class TrialRow:
    trial_id: str
    rater_id: int
    position: int
    slot: str
    pair_id: int | None
    left_clip: str | None
    right_clip: str | None
    repeat_of: str | None
    served_at: float | None
    submitted_at: float | None


def token_hash(token: str) -> str:
    # Tokens are 144 random bits, so a fast hash is safe: there is no dictionary to try against it.
    return hashlib.sha256(token.strip().encode()).hexdigest()


def _integer(value: Any) -> int | None:
    """numpy integers would be stored as blobs (they expose a buffer), which never join."""
    return None if value is None else int(value)


def random_name(nbytes: int = 16) -> str:
    return secrets.token_hex(nbytes)


FREE_BOX_HEADER = 8   # 32-bit size + type 'free' (ISO/IEC 14496-12: a top-level box any reader skips)


def _append_free_box(path: Path, length: int) -> None:
    """`length` bytes (header included) of padding at the end of an mp4, written to a copy that replaces it."""
    from mheval.files import write_atomically

    if not FREE_BOX_HEADER <= length < 2 ** 32:
        raise ValueError(f"{path}: cannot pad by {length} bytes")

    def write(handle) -> None:
        with open(path, "rb") as source:
            while chunk := source.read(1 << 20):
                handle.write(chunk)
        handle.write(struct.pack(">I4s", length, b"free"))
        handle.write(bytes(length - FREE_BOX_HEADER))

    write_atomically(path, write)


def served_study() -> StudyStore:
    """The study `mheval review serve` serves, as its environment names it (the app and the media endpoint)."""
    return StudyStore(os.environ[STUDY_ENV], grant_seconds=float(os.environ.get(GRANT_SECONDS_ENV,
                                                                                DEFAULT_GRANT_SECONDS)))


class StudyStore:
    def __init__(self, directory: Path | str, create: bool = False, grant_seconds: float = DEFAULT_GRANT_SECONDS):
        """`grant_seconds`: how long a media grant lasts after it is issued (the server's `--grant-minutes`)."""
        if not grant_seconds > 0:
            raise ValueError(f"a media grant must last a positive time, got {grant_seconds} s")
        self.directory = Path(directory)
        self.grant_seconds = grant_seconds
        self.db_path = self.directory / DATABASE
        if not create and not self.db_path.exists():
            raise FileNotFoundError(f"{self.directory}: not a study directory (no {DATABASE}); "
                                    "make one with `mheval review create RUN_DIR --models A,B`")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.media_dir = self.directory / MEDIA
        self._db = connect(self.db_path, check_same_thread=False)
        self._db.executescript(SCHEMA)
        self._upgrade()

    def _upgrade(self) -> None:
        """Studies made before grants expired: their grants get an issue time of 0, so they lapse at once."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(grants)")}
        if "issued_at" not in columns:
            with self.transaction() as db:
                db.execute("ALTER TABLE grants ADD COLUMN issued_at REAL NOT NULL DEFAULT 0")

    def close(self) -> None:
        self._db.close()

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """One atomic write; nested use joins the outer transaction."""
        return transaction(self._db)

    def query(self, sql: str, params: tuple = ()) -> pd.DataFrame:
        return pd.read_sql_query(sql, self._db, params=params)

    # -- settings ---------------------------------------------------------------------------------------------------

    def put_settings(self, values: dict[str, Any]) -> None:
        with self.transaction() as db:
            db.executemany("INSERT OR REPLACE INTO settings VALUES (?, ?)",
                           [(key, json.dumps(value, ensure_ascii=False)) for key, value in values.items()])

    def settings(self) -> dict[str, Any]:
        return {key: json.loads(value) for key, value in self._db.execute("SELECT key, value FROM settings")}

    # -- content written once by `create` ---------------------------------------------------------------------------

    def add_item(self, item_id: str, language: str, scene: str, spoken: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO items VALUES (?,?,?,?)", (item_id, language, scene, spoken))

    def add_clip(self, model: str, item_id: str, variant: str, source_path: str, source_sha256: str,
                 seconds: float, media_name: str) -> str:
        clip_id = random_name(8)
        with self.transaction() as db:
            db.execute("INSERT INTO clips VALUES (?,?,?,?,?,?,?,?)",
                       (clip_id, media_name, model, item_id, variant, source_path, source_sha256, seconds))
        return clip_id

    def add_pair(self, item_id: str, clip_a: str, clip_b: str, kind: str, first_left: str,
                 catch_type: str | None = None, expected: dict[str, str] | None = None) -> int:
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT INTO pairs (item_id, clip_a, clip_b, kind, catch_type, expected, first_left) "
                "VALUES (?,?,?,?,?,?,?)",
                (item_id, clip_a, clip_b, kind, catch_type, json.dumps(expected) if expected else None, first_left))
            return int(cursor.lastrowid)

    def items(self) -> pd.DataFrame:
        return self.query("SELECT * FROM items ORDER BY item_id")

    def clips(self) -> pd.DataFrame:
        return self.query("SELECT * FROM clips ORDER BY item_id, model, variant")

    def pairs(self) -> pd.DataFrame:
        return self.query("SELECT * FROM pairs ORDER BY pair_id")

    # -- raters -----------------------------------------------------------------------------------------------------

    def invite(self, name: str, languages: list[str], new_token: bool = False) -> str:
        """A new rater (or, with `new_token`, a fresh token for an existing one); returns the token, shown once."""
        name = name.strip()
        if not name:
            raise StudyError("a rater needs a name")
        token = secrets.token_urlsafe(18)
        with self.transaction() as db:
            existing = db.execute("SELECT rater_id FROM raters WHERE name = ?", (name,)).fetchone()
            if existing and not new_token:
                raise StudyError(f"rater {name!r} is already invited; `--new-token` replaces their token "
                                 "(their votes stay)")
            if not existing and new_token:
                raise StudyError(f"no rater named {name!r}")
            if existing:
                db.execute("UPDATE raters SET token_sha256 = ?, revoked = NULL WHERE rater_id = ?",
                           (token_hash(token), existing[0]))
            else:
                db.execute("INSERT INTO raters (name, token_sha256, languages, created) VALUES (?,?,?,?)",
                           (name, token_hash(token), json.dumps(sorted(languages)), time.time()))
        return token

    def revoke(self, name: str) -> None:
        with self.transaction() as db:
            if db.execute("UPDATE raters SET revoked = ? WHERE name = ? AND revoked IS NULL",
                          (time.time(), name)).rowcount == 0:
                known = db.execute("SELECT 1 FROM raters WHERE name = ?", (name,)).fetchone()
                raise StudyError(f"rater {name!r} is already revoked" if known else f"no rater named {name!r}")

    def authenticate(self, token: str, client: str = "", now: float | None = None) -> Rater:
        """The rater holding `token`. A client with `SIGN_IN_FAILURES_ALLOWED` invalid tokens within
        `SIGN_IN_WINDOW_SECONDS` is refused, valid token or not, until its oldest failure leaves the window."""
        now = time.time() if now is None else now
        with self.transaction() as db:
            since = now - SIGN_IN_WINDOW_SECONDS
            db.execute("DELETE FROM sign_in_failures WHERE failed_at < ?", (since,))
            failures = db.execute("SELECT COUNT(*), MIN(failed_at) FROM sign_in_failures WHERE client = ?",
                                  (client,)).fetchone()
            if failures[0] >= SIGN_IN_FAILURES_ALLOWED:
                minutes = math.ceil((failures[1] + SIGN_IN_WINDOW_SECONDS - now) / 60)
                raise StudyError(f"Too many invalid tokens were entered from here. Try again in {minutes} minute"
                                 f"{'s' if minutes != 1 else ''}.")
            row = db.execute("SELECT rater_id, name, languages, revoked FROM raters WHERE token_sha256 = ?",
                             (token_hash(token),)).fetchone()
            if row is None:
                db.execute("INSERT INTO sign_in_failures VALUES (?, ?)", (client, now))
        if row is None:
            raise StudyError("This token is not valid for this study.")
        rater = Rater(row[0], row[1], tuple(json.loads(row[2])), row[3] is not None)
        if rater.revoked:
            raise StudyError("This token has been revoked. Ask the study's organiser for a new one.")
        return rater

    def rater(self, rater_id: int) -> Rater:
        row = self._db.execute("SELECT rater_id, name, languages, revoked FROM raters WHERE rater_id = ?",
                               (rater_id,)).fetchone()
        if row is None:
            raise StudyError("unknown rater")
        return Rater(row[0], row[1], tuple(json.loads(row[2])), row[3] is not None)

    def raters(self) -> pd.DataFrame:
        return self.query("SELECT rater_id, name, languages, created, revoked FROM raters ORDER BY rater_id")

    # -- trials -----------------------------------------------------------------------------------------------------

    def add_trials(self, rater_id: int, rows: list[dict[str, Any]]) -> None:
        """Append trials to a rater's queue; each row has slot and optionally pair_id, left_clip, right_clip,
        sampling. Positions continue after the rater's last trial."""
        with self.transaction() as db:
            last = db.execute("SELECT COALESCE(MAX(position), 0) FROM trials WHERE rater_id = ?",
                              (rater_id,)).fetchone()[0]
            db.executemany(
                "INSERT INTO trials (trial_id, rater_id, position, slot, pair_id, left_clip, right_clip, sampling) "
                "VALUES (?,?,?,?,?,?,?,?)",
                [(random_name(8), rater_id, last + index, row["slot"], _integer(row.get("pair_id")), row.get("left_clip"),
                  row.get("right_clip"), json.dumps(row.get("sampling"))) for index, row in enumerate(rows, 1)])

    def fill_trial(self, trial_id: str, pair_id: int, left_clip: str, right_clip: str, sampling: dict,
                   repeat_of: str | None = None) -> None:
        with self.transaction() as db:
            db.execute("UPDATE trials SET pair_id = ?, left_clip = ?, right_clip = ?, sampling = ?, repeat_of = ? "
                       "WHERE trial_id = ? AND pair_id IS NULL",
                       (int(pair_id), left_clip, right_clip, json.dumps(sampling), repeat_of, trial_id))

    def drop_trial(self, trial_id: str) -> None:
        """Remove an unfilled slot that cannot be filled; later trials move up so positions stay contiguous."""
        with self.transaction() as db:
            rater_id, position = db.execute("SELECT rater_id, position FROM trials WHERE trial_id = ?",
                                            (trial_id,)).fetchone()
            db.execute("DELETE FROM trials WHERE trial_id = ? AND pair_id IS NULL", (trial_id,))
            later = db.execute("SELECT trial_id FROM trials WHERE rater_id = ? AND position > ? ORDER BY position",
                               (rater_id, position)).fetchall()
            for offset, (later_id,) in enumerate(later):
                db.execute("UPDATE trials SET position = ? WHERE trial_id = ?", (position + offset, later_id))

    def _trial_rows(self, where: str, params: tuple, order: str = "position") -> list[TrialRow]:
        rows = self._db.execute(
            "SELECT trial_id, rater_id, position, slot, pair_id, left_clip, right_clip, repeat_of, served_at, "
            f"submitted_at FROM trials WHERE {where} ORDER BY {order}", params).fetchall()
        return [TrialRow(*row) for row in rows]

    def rater_trials(self, rater_id: int) -> list[TrialRow]:
        return self._trial_rows("rater_id = ?", (rater_id,))

    def trial(self, trial_id: str) -> TrialRow:
        rows = self._trial_rows("trial_id = ?", (trial_id,))
        if not rows:
            raise StudyError("unknown trial")
        return rows[0]

    def mark_served(self, trial_id: str, now: float | None = None) -> None:
        with self.transaction() as db:
            db.execute("UPDATE trials SET served_at = ? WHERE trial_id = ? AND served_at IS NULL",
                       (time.time() if now is None else now, trial_id))

    def times_shown(self) -> dict[int, int]:
        """pair_id → how many raters were given it (repeats not counted): balances the next assignment and sets the
        side order of its next showing."""
        return dict(self._db.execute("SELECT pair_id, COUNT(*) FROM trials WHERE pair_id IS NOT NULL "
                                     "AND slot != 'repeat' GROUP BY pair_id").fetchall())

    def trials(self) -> pd.DataFrame:
        return self.query("SELECT * FROM trials ORDER BY rater_id, position")

    # -- choices and votes ------------------------------------------------------------------------------------------

    def _own_trial(self, db: sqlite3.Connection, rater_id: int, trial_id: str) -> tuple:
        row = db.execute(
            "SELECT t.served_at, t.submitted_at, l.seconds, r.seconds, x.revoked FROM trials t "
            "JOIN clips l ON l.clip_id = t.left_clip JOIN clips r ON r.clip_id = t.right_clip "
            "JOIN raters x ON x.rater_id = t.rater_id WHERE t.trial_id = ? AND t.rater_id = ?",
            (trial_id, rater_id)).fetchone()
        if row is None:
            raise VoteRefused("This trial is not yours.")
        if row[4] is not None:
            raise VoteRefused("Your token has been revoked.")
        return row

    def save_choice(self, rater_id: int, trial_id: str, criterion: str, verdict: str) -> None:
        """A draft answer for one criterion, kept across browser refreshes until the trial is submitted."""
        self._check_answer(criterion, verdict)
        with self.transaction() as db:
            if self._own_trial(db, rater_id, trial_id)[1] is not None:
                raise VoteRefused("This trial is already submitted.")
            db.execute("INSERT OR REPLACE INTO choices VALUES (?,?,?,?)", (trial_id, criterion, verdict, time.time()))

    def choices(self, rater_id: int, trial_id: str) -> dict[str, str]:
        """The rater's current answers for a trial: drafts, or the votes once submitted."""
        rows = self._db.execute(
            "SELECT c.criterion, c.verdict FROM choices c JOIN trials t USING (trial_id) "
            "WHERE c.trial_id = ? AND t.rater_id = ? UNION ALL "
            "SELECT criterion, verdict FROM votes WHERE trial_id = ? AND rater_id = ?",
            (trial_id, rater_id, trial_id, rater_id)).fetchall()
        return dict(rows)

    def _check_answer(self, criterion: str, verdict: str) -> None:
        if criterion not in self.settings()["criteria"]:
            raise VoteRefused(f"unknown criterion {criterion!r}")
        if verdict not in VERDICTS:
            raise VoteRefused(f"unknown answer {verdict!r}")

    def submit_votes(self, rater_id: int, trial_id: str, verdicts: dict[str, str], now: float | None = None) -> bool:
        """Write one vote per criterion, atomically. True when written, False when this trial was already
        submitted (a double submit stores nothing new). Raises VoteRefused when the rater may not vote yet."""
        settings = self.settings()
        for criterion, verdict in verdicts.items():
            self._check_answer(criterion, verdict)
        now = time.time() if now is None else now
        with self.transaction() as db:
            served_at, submitted_at, left_seconds, right_seconds, _ = self._own_trial(db, rater_id, trial_id)
            if submitted_at is not None:
                return False
            needed = settings["dwell_factor"] * (left_seconds + right_seconds)
            watched = now - served_at if served_at is not None else 0.0
            if watched + CLOCK_SLACK < needed:
                raise VoteRefused(f"Play both clips to the end first ({math.ceil(needed - watched)} s left).",
                                  needed - watched)
            missing = [c for c in settings["criteria"] if c not in verdicts]
            if missing:
                raise VoteRefused("Answer every question first: " + ", ".join(CRITERION_LABELS[c] for c in missing))
            db.executemany("INSERT OR IGNORE INTO votes VALUES (?,?,?,?,?)",
                           [(trial_id, c, rater_id, verdicts[c], now) for c in settings["criteria"]])
            db.execute("DELETE FROM choices WHERE trial_id = ?", (trial_id,))
            db.execute("UPDATE trials SET submitted_at = ? WHERE trial_id = ?", (now, trial_id))
        return True

    def undoable(self, rater_id: int, now: float | None = None) -> TrialRow | None:
        """The rater's last submitted trial while it can still be undone."""
        now = time.time() if now is None else now
        rows = self._trial_rows("rater_id = ? AND submitted_at IS NOT NULL", (rater_id,), order="submitted_at DESC")
        if rows and rows[0].submitted_at >= now - self.settings()["undo_seconds"]:
            return rows[0]
        return None

    def undo(self, rater_id: int, trial_id: str, now: float | None = None) -> None:
        """Withdraw a just-submitted trial: its votes go back to drafts and the trial is the rater's current one."""
        last = self.undoable(rater_id, now)
        if last is None or last.trial_id != trial_id:
            raise VoteRefused("Too late to undo this trial.")
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO choices SELECT trial_id, criterion, verdict, cast_at FROM votes "
                       "WHERE trial_id = ? AND rater_id = ?", (trial_id, rater_id))
            db.execute("DELETE FROM votes WHERE trial_id = ? AND rater_id = ?", (trial_id, rater_id))
            db.execute("UPDATE trials SET submitted_at = NULL WHERE trial_id = ?", (trial_id,))

    def vote_count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM votes").fetchone()[0]

    # -- media ------------------------------------------------------------------------------------------------------

    def grant(self, trial_id: str, side: str, now: float | None = None) -> str:
        """The random name under which one side of a trial is served: the same for every rerun of the page while it
        lasts (`grant_seconds`), then a new one."""
        now = time.time() if now is None else now
        with self.transaction() as db:
            row = db.execute("SELECT grant_token, issued_at FROM grants WHERE trial_id = ? AND side = ?",
                             (trial_id, side)).fetchone()
            if row and row[1] > now - self.grant_seconds:
                return row[0]
            token = secrets.token_urlsafe(24)
            db.execute("INSERT OR REPLACE INTO grants (grant_token, trial_id, side, issued_at) VALUES (?,?,?,?)",
                       (token, trial_id, side, now))
            return token

    def granted_media(self, grant_token: str, now: float | None = None) -> Path | None:
        """The media file a grant opens, or None: unknown or lapsed grant (older than `grant_seconds`), a trial that
        is not the rater's current one (submitted, or put back behind an undone one), a revoked rater, or anything
        outside media/."""
        if not GRANT_PATTERN.fullmatch(grant_token):
            return None
        now = time.time() if now is None else now
        row = self._db.execute(
            "SELECT c.media_name FROM grants g JOIN trials t USING (trial_id) JOIN raters r ON r.rater_id = t.rater_id "
            "JOIN clips c ON c.clip_id = CASE g.side WHEN 'left' THEN t.left_clip ELSE t.right_clip END "
            "WHERE g.grant_token = ? AND r.revoked IS NULL AND g.issued_at > ? AND t.submitted_at IS NULL "
            "AND NOT EXISTS (SELECT 1 FROM trials e WHERE e.rater_id = t.rater_id AND e.position < t.position "
            "AND e.submitted_at IS NULL)", (grant_token, now - self.grant_seconds)).fetchone()
        if row is None:
            return None
        path = (self.media_dir / row[0]).resolve()
        return path if path.parent == self.media_dir.resolve() and path.is_file() else None

    def even_out_media(self) -> int:
        """Make every file in media/ the same length, so no response size tells clips apart (an identical-pair catch
        trial, a frozen copy that compresses to little, one model's clips that run longer): each file is rewritten
        with its index first (else the browser's first range request would start at the clip's own media length)
        and padded with an mp4 `free` box at its end, which players skip. Idempotent; returns how many files it
        padded."""
        from mheval.media import move_index_to_front

        files = sorted(path for path in self.media_dir.glob("*.mp4") if not path.name.startswith("."))
        if len({path.stat().st_size for path in files}) <= 1:
            return 0
        for path in files:
            move_index_to_front(path)
        sizes = {path: path.stat().st_size for path in files}
        target = max(sizes.values()) + FREE_BOX_HEADER   # even the largest file has room for a box header
        for path, size in sizes.items():
            if size < target:
                _append_free_box(path, target - size)
        return sum(size < target for size in sizes.values())

    # -- everything, for the report -----------------------------------------------------------------------------------

    def votes(self) -> pd.DataFrame:
        """One row per vote with everything the statistics need (models, sides, catch answers, language)."""
        return self.query("""
            SELECT v.cast_at, v.rater_id, x.name AS rater, v.trial_id, t.position, t.slot, t.repeat_of, t.sampling,
                   v.criterion, v.verdict, p.pair_id, p.kind, p.catch_type, p.expected, p.item_id, i.language,
                   t.left_clip, t.right_clip, p.clip_a, p.clip_b, l.model AS left_model, r.model AS right_model,
                   a.model AS model_a, b.model AS model_b, a.source_sha256 AS sha256_a, b.source_sha256 AS sha256_b
            FROM votes v JOIN trials t USING (trial_id) JOIN raters x ON x.rater_id = v.rater_id
            JOIN pairs p ON p.pair_id = t.pair_id JOIN items i ON i.item_id = p.item_id
            JOIN clips l ON l.clip_id = t.left_clip JOIN clips r ON r.clip_id = t.right_clip
            JOIN clips a ON a.clip_id = p.clip_a JOIN clips b ON b.clip_id = p.clip_b
            ORDER BY v.cast_at, v.trial_id, v.criterion""")
