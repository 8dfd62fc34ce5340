"""The run store: the only code that talks SQL. Every write is idempotent and committed at once."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from .errors import SafeevalError

SCHEMA = """
CREATE TABLE IF NOT EXISTS generations (
    key TEXT PRIMARY KEY,       -- hash of model fingerprint, backend, params and rendered prompt
    model TEXT NOT NULL,        -- model fingerprint
    backend TEXT NOT NULL,
    params TEXT NOT NULL,       -- JSON of GenParams
    prompt TEXT NOT NULL,       -- the exact rendered prompt
    response TEXT NOT NULL,
    finish_reason TEXT,
    n_tokens INTEGER,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS judgments (
    key TEXT PRIMARY KEY,       -- hash of judge fingerprint and generation key
    judge TEXT NOT NULL,        -- judge fingerprint
    generation TEXT NOT NULL,
    verdict TEXT NOT NULL,      -- JSON of Verdict
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    out TEXT PRIMARY KEY,       -- the run folder; a re-run into the same folder replaces its row
    results TEXT NOT NULL,      -- JSON of results.json
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS validations (
    judge TEXT NOT NULL,        -- judge fingerprint
    labels TEXT NOT NULL,       -- hash of the labelled set
    report TEXT NOT NULL,       -- JSON: confusion counts, agreement, kappa, ...
    created REAL NOT NULL,
    PRIMARY KEY (judge, labels)
);
"""
_CHUNK = 500  # SQLite limits the number of bound parameters per statement


class Store:
    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # WAL lets readers and a writer of several processes share the file; the timeout makes
            # a writer wait for another's commit instead of failing.
            self.db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise SafeevalError(f"Cannot open the run store {self.path}: {exc}.") from None

    def close(self) -> None:
        self.db.close()

    def _get(self, table: str, columns: str, keys: list[str]) -> dict[str, tuple]:
        found = {}
        unique = list(dict.fromkeys(keys))
        for i in range(0, len(unique), _CHUNK):
            chunk = unique[i:i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for row in self.db.execute(f"SELECT key, {columns} FROM {table} WHERE key IN ({marks})", chunk):
                found[row[0]] = row[1:]
        return found

    def _put(self, table: str, rows: list[tuple]) -> None:
        if not rows:
            return
        marks = ",".join("?" * len(rows[0]))
        with self.db:  # one transaction per group: all of it lands, or none
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany(f"INSERT OR IGNORE INTO {table} VALUES ({marks})", rows)

    def get_generations(self, keys: list[str]) -> dict[str, dict]:
        rows = self._get("generations", "response, finish_reason, n_tokens, prompt", keys)
        return {k: {"response": r[0], "finish_reason": r[1], "n_tokens": r[2], "prompt": r[3]} for k, r in rows.items()}

    def put_generations(self, rows: list[dict]) -> None:
        now = time.time()
        self._put("generations", [(r["key"], r["model"], r["backend"], json.dumps(r["params"], sort_keys=True),
                                   r["prompt"], r["response"], r["finish_reason"], r["n_tokens"], now) for r in rows])

    def get_judgments(self, keys: list[str]) -> dict[str, dict]:
        return {k: json.loads(r[0]) for k, r in self._get("judgments", "verdict", keys).items()}

    def put_judgments(self, rows: list[dict]) -> None:
        now = time.time()
        self._put("judgments", [(r["key"], r["judge"], r["generation"], json.dumps(r["verdict"]), now) for r in rows])

    def put_validation(self, judge: str, labels: str, report: dict) -> None:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("INSERT OR REPLACE INTO validations VALUES (?, ?, ?, ?)",
                            (judge, labels, json.dumps(report), time.time()))

    def get_validation(self, judge: str) -> dict | None:
        """The newest validation of this exact judge (same model, prompt format and parser)."""
        row = self.db.execute("SELECT report FROM validations WHERE judge = ? ORDER BY created DESC LIMIT 1",
                              (judge,)).fetchone()
        return json.loads(row[0]) if row else None

    def get_validations(self, judge: str) -> list[dict]:
        """Every validation of this exact judge, one per label set, newest first."""
        rows = self.db.execute("SELECT report FROM validations WHERE judge = ? ORDER BY created DESC", (judge,))
        return [json.loads(r[0]) for r in rows]

    def put_run(self, out: str, results: dict) -> None:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("INSERT OR REPLACE INTO runs VALUES (?, ?, ?)", (out, json.dumps(results), time.time()))

    def get_runs(self) -> list[tuple[str, dict]]:
        return [(out, json.loads(r)) for out, r in self.db.execute("SELECT out, results FROM runs ORDER BY created")]

    def count(self, table: str) -> int:
        return self.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
