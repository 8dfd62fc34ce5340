"""The run store: the only code that talks SQL. Every write is idempotent and committed at once.

Store versions (`PRAGMA user_version`): 0, stores written before versions, kept runs by their folder; 1 keys runs by
a run id (keys.run_id) and keeps the values a merge did not keep in `merge_conflicts`. Opening an older store
upgrades it in place; a newer one is refused in one sentence.

Shards: machines that cannot share one SQLite file (cluster workers: WAL is unsafe on network filesystems) each
write their own store, a shard, and `merge` folds shards into one store. Keys hash a generation's or verdict's
inputs, yet its output can differ between machines (bfloat16 greedy decoding depends on the device and the batch):
a merge keeps the value the store already holds, counts each key whose value differs, and keeps the other value
aside, so nothing is lost silently.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from pathlib import Path
from urllib.parse import quote

from .errors import SafeevalError
from .keys import run_id

STORE_VERSION = 1
TABLES = [
    """CREATE TABLE IF NOT EXISTS generations (
    key TEXT PRIMARY KEY,       -- hash of model fingerprint, backend, params and rendered prompt
    model TEXT NOT NULL,        -- model fingerprint
    backend TEXT NOT NULL,
    params TEXT NOT NULL,       -- JSON of GenParams
    prompt TEXT NOT NULL,       -- the exact rendered prompt
    response TEXT NOT NULL,
    finish_reason TEXT,
    n_tokens INTEGER,
    created REAL NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS judgments (
    key TEXT PRIMARY KEY,       -- hash of judge fingerprint and generation key
    judge TEXT NOT NULL,        -- judge fingerprint
    generation TEXT NOT NULL,
    verdict TEXT NOT NULL,      -- JSON of Verdict
    created REAL NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,        -- keys.run_id: the same run, wherever it ran, is one row; a re-run replaces it
    out TEXT NOT NULL,          -- the run folder, as the machine that wrote it named it
    results TEXT NOT NULL,      -- JSON of results.json
    created REAL NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS validations (
    judge TEXT NOT NULL,        -- judge fingerprint
    labels TEXT NOT NULL,       -- hash of the labelled set
    report TEXT NOT NULL,       -- JSON: confusion counts, agreement, kappa, ...
    created REAL NOT NULL,
    PRIMARY KEY (judge, labels)
)""",
    """CREATE TABLE IF NOT EXISTS merge_conflicts (
    tbl TEXT NOT NULL,          -- generations or judgments
    key TEXT NOT NULL,
    lost TEXT NOT NULL,         -- JSON of the row a merge did not keep (the store already held another value)
    source TEXT NOT NULL,       -- the shard it came from
    created REAL NOT NULL,
    PRIMARY KEY (tbl, key, lost)
)""",
]
# What a merge compares: a key whose output differs is a conflict; every other column may differ harmlessly.
OUTPUTS = {"generations": "response", "judgments": "verdict"}
# Records whose newest version wins, as their own writes replace them (put_run, put_validation).
RECORDS = {"runs": ("id",), "validations": ("judge", "labels")}
_CHUNK = 500  # SQLite limits the number of bound parameters per statement
_REDIRECTS: dict[str, tuple[Path, object]] = {}


@contextlib.contextmanager
def redirect(path: Path | str, shard: Path, upstream=None):
    """While inside, a Store opened on `path` (a study's store, on another machine) is the local file `shard`:
    every write lands there, and a read the shard cannot answer is asked of `upstream` (an object with this class's
    get_generations, get_judgments and get_validation). A cluster step thereby runs the very code a local one does."""
    where = os.path.abspath(path)
    _REDIRECTS[where] = (Path(shard), upstream)
    try:
        yield
    finally:
        _REDIRECTS.pop(where, None)


class Store:
    def __init__(self, path: Path):
        self.path = Path(path)  # as asked for: results record it
        self.file, self.upstream = _REDIRECTS.get(os.path.abspath(self.path), (self.path, None))
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            # WAL lets readers and a writer of several processes share the file; the timeout makes
            # a writer wait for another's commit instead of failing.
            self.db = sqlite3.connect(self.file, timeout=60, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self._upgrade()
        except sqlite3.DatabaseError as exc:
            raise SafeevalError(f"Cannot open the run store {self.path}: {exc}.") from None

    def _upgrade(self) -> None:
        """Bring a new or older store to STORE_VERSION, once, whichever process gets there first."""
        if self._version() == STORE_VERSION:
            return
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            version = self._version()
            if version > STORE_VERSION:
                raise SafeevalError(
                    f"The run store {self.path} was written by a newer safeeval (store version "
                    f"{version}; this one reads up to {STORE_VERSION}): upgrade safeeval."
                )
            old_runs = version == 0 and "out" in self._columns("runs") and "id" not in self._columns("runs")
            if old_runs:
                self.db.execute("ALTER TABLE runs RENAME TO runs_v0")
            for table in TABLES:
                self.db.execute(table)
            if old_runs:  # version 0 kept runs by their folder: each keeps its folder and gets its id
                rows = self.db.execute("SELECT out, results, created FROM runs_v0").fetchall()
                self.db.executemany(
                    "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?)",
                    [(_id_of(results, out), out, results, created) for out, results, created in rows],
                )
                self.db.execute("DROP TABLE runs_v0")
            self.db.execute(f"PRAGMA user_version = {STORE_VERSION}")

    def _version(self, schema: str = "main") -> int:
        return self.db.execute(f"PRAGMA {schema}.user_version").fetchone()[0]

    def _columns(self, table: str, schema: str = "main") -> list[str]:
        return [row[1] for row in self.db.execute(f"PRAGMA {schema}.table_info({table})")]

    def close(self) -> None:
        self.db.close()

    def _get(self, table: str, columns: str, keys: list[str]) -> dict[str, tuple]:
        found = {}
        unique = list(dict.fromkeys(keys))
        for i in range(0, len(unique), _CHUNK):
            chunk = unique[i : i + _CHUNK]
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

    def _also_upstream(self, found: dict, keys: list[str], method: str) -> dict:
        """Keys this file lacks, asked of the upstream store (a redirected store only)."""
        missing = [k for k in dict.fromkeys(keys) if k not in found] if self.upstream is not None else []
        if missing:
            found.update(getattr(self.upstream, method)(missing))
        return found

    def get_generations(self, keys: list[str]) -> dict[str, dict]:
        rows = self._get("generations", "response, finish_reason, n_tokens, prompt", keys)
        found = {
            k: {"response": r[0], "finish_reason": r[1], "n_tokens": r[2], "prompt": r[3]} for k, r in rows.items()
        }
        return self._also_upstream(found, keys, "get_generations")

    def put_generations(self, rows: list[dict]) -> None:
        now = time.time()
        self._put(
            "generations",
            [
                (
                    r["key"],
                    r["model"],
                    r["backend"],
                    json.dumps(r["params"], sort_keys=True),
                    r["prompt"],
                    r["response"],
                    r["finish_reason"],
                    r["n_tokens"],
                    now,
                )
                for r in rows
            ],
        )

    def get_judgments(self, keys: list[str]) -> dict[str, dict]:
        found = {k: json.loads(r[0]) for k, r in self._get("judgments", "verdict", keys).items()}
        return self._also_upstream(found, keys, "get_judgments")

    def put_judgments(self, rows: list[dict]) -> None:
        now = time.time()
        self._put("judgments", [(r["key"], r["judge"], r["generation"], json.dumps(r["verdict"]), now) for r in rows])

    def put_validation(self, judge: str, labels: str, report: dict) -> None:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute(
                "INSERT OR REPLACE INTO validations VALUES (?, ?, ?, ?)",
                (judge, labels, json.dumps(report), time.time()),
            )

    def get_validation(self, judge: str) -> dict | None:
        """The newest validation of this exact judge (same model, prompt format and parser)."""
        row = self.db.execute(
            "SELECT report FROM validations WHERE judge = ? ORDER BY created DESC LIMIT 1", (judge,)
        ).fetchone()
        if row is None and self.upstream is not None:
            return self.upstream.get_validation(judge)
        return json.loads(row[0]) if row else None

    def get_validations(self, judge: str) -> list[dict]:
        """Every validation of this exact judge, one per label set, newest first."""
        rows = self.db.execute("SELECT report FROM validations WHERE judge = ? ORDER BY created DESC", (judge,))
        return [json.loads(r[0]) for r in rows]

    def put_run(self, out: str, results: dict) -> None:
        """The run's row, by its run id: a re-run of the same run, here or on another machine, replaces it."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute(
                "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?)",
                (run_id(results), out, json.dumps(results), time.time()),
            )

    def get_runs(self) -> list[tuple[str, dict]]:
        """(folder, results) of every run, oldest first."""
        return [(out, json.loads(r)) for out, r in self.db.execute("SELECT out, results FROM runs ORDER BY created")]

    def count(self, table: str) -> int:
        return self.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]

    def merge(self, shard: Path) -> dict[str, dict[str, int]]:
        """Fold a shard into this store in one transaction (all of it lands, or none); returns counts by table.
        Generations and verdicts: a new key is added; a key held already is kept as it is ("present"), and if the
        shard's output differs it is a conflict, the shard's row kept in merge_conflicts. Runs and validations:
        the newer row wins, as a re-run's own write would. Merging the same shard again changes nothing."""
        version = check_shard(shard)
        if version < STORE_VERSION:  # an older store: upgraded in place, as opening it anywhere would
            Store(shard).close()
        self.db.execute("ATTACH DATABASE ? AS shard", (str(shard),))
        try:
            with self.db:
                self.db.execute("BEGIN IMMEDIATE")
                counts = {table: self._merge_outputs(table, column, str(shard)) for table, column in OUTPUTS.items()}
                counts.update({table: self._merge_records(table, by) for table, by in RECORDS.items()})
                self.db.execute("INSERT OR IGNORE INTO main.merge_conflicts SELECT * FROM shard.merge_conflicts")
        finally:
            self.db.execute("DETACH DATABASE shard")
        return counts

    def _merge_outputs(self, table: str, output: str, source: str) -> dict[str, int]:
        columns = self._columns(table)
        differing = self.db.execute(
            f"SELECT {', '.join('s.' + c for c in columns)} FROM shard.{table} s JOIN main.{table} m USING (key) "
            f"WHERE s.{output} IS NOT m.{output}"
        ).fetchall()
        now = time.time()
        lost = [(table, row[0], json.dumps(dict(zip(columns, row, strict=True))), source, now) for row in differing]
        self.db.executemany("INSERT OR IGNORE INTO main.merge_conflicts VALUES (?, ?, ?, ?, ?)", lost)
        held = self.db.execute(f"SELECT COUNT(*) FROM shard.{table} JOIN main.{table} USING (key)").fetchone()[0]
        names = ", ".join(columns)
        added = self.db.execute(f"INSERT OR IGNORE INTO main.{table} ({names}) SELECT {names} FROM shard.{table}")
        return {"added": added.rowcount, "present": held - len(differing), "conflicts": len(differing)}

    def _merge_records(self, table: str, by: tuple[str, ...]) -> dict[str, int]:
        columns = ", ".join(self._columns(table))
        theirs = ", ".join("s." + c for c in self._columns(table))
        match = " AND ".join(f"s.{c} = m.{c}" for c in by)
        held = self.db.execute(f"SELECT COUNT(*) FROM shard.{table} s JOIN main.{table} m ON {match}").fetchone()[0]
        newer = self.db.execute(
            f"INSERT OR REPLACE INTO main.{table} ({columns}) SELECT {theirs} FROM shard.{table} s "
            f"JOIN main.{table} m ON {match} WHERE s.created > m.created"
        ).rowcount
        added = self.db.execute(f"INSERT OR IGNORE INTO main.{table} ({columns}) SELECT {columns} FROM shard.{table}")
        return {"added": added.rowcount, "present": held - newer, "replaced": newer}


def check_shard(path: Path) -> int:
    """Refuse, before anything is written, a shard that is missing, corrupt (SQLite's integrity check), not a
    safeeval store, or written by a newer store version; returns its store version."""
    path = Path(path)
    if not path.is_file():
        raise SafeevalError(f"No store shard at {path}.")
    try:  # read-only: checking a shard never changes it
        db = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True)
        try:
            problems = [row[0] for row in db.execute("PRAGMA integrity_check")]
            version = db.execute("PRAGMA user_version").fetchone()[0]
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:  # a page too broken to check, or no SQLite file at all
        problems = [str(exc)]
    if problems != ["ok"]:
        raise SafeevalError(f"{path} failed SQLite's integrity check ({problems[0]}); nothing was merged.")
    if not {"generations", "judgments", "runs"} <= tables:
        raise SafeevalError(
            f"{path} is not a safeeval store (it has no generations, judgments and runs tables); nothing was merged."
        )
    if version > STORE_VERSION:
        raise SafeevalError(
            f"{path} was written by a newer safeeval (store version {version}; this one merges up to "
            f"{STORE_VERSION}); nothing was merged: upgrade safeeval."
        )
    return version


def take_shard(path: Path) -> bytes:
    """A shard as the bytes of one self-contained file (VACUUM INTO folds in its write-ahead log, even while a
    connection is still open), then removed from this disk; b"" when nothing was written."""
    path = Path(path)
    if not path.exists():
        return b""
    packed = path.with_name(path.name + ".packed")
    packed.unlink(missing_ok=True)
    db = sqlite3.connect(path)
    try:
        db.execute("VACUUM INTO ?", (str(packed),))
    finally:
        db.close()
    data = packed.read_bytes()
    for leftover in (packed, path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        leftover.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # the study's folder on this disk, once its last shard is sent
        path.parent.rmdir()
    return data


def _id_of(results: str, out: str) -> str:
    try:
        return run_id(json.loads(results))
    except (ValueError, AttributeError):  # a row no results reader could use either: kept, by its folder
        return "folder:" + out
