"""The store's writes are idempotent and safe to share between processes; shards merge into one store."""

from __future__ import annotations

import json
import multiprocessing as mp
import sqlite3

from safeeval.keys import key
from safeeval.store import STORE_VERSION, Store, redirect


def _row(i: int, writer: int = 0) -> dict:
    return {
        "key": key("g", i),
        "model": "m",
        "backend": "hf",
        "params": {"t": 0},
        "prompt": f"p{i}",
        "response": f"r{i} by {writer}",
        "finish_reason": "stop",
        "n_tokens": 3,
    }


def test_writes_are_idempotent(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    store.put_generations([_row(1), _row(2)])
    store.put_generations([_row(2, writer=9), _row(3)])
    assert store.count("generations") == 3
    got = store.get_generations([key("g", 2), key("g", 4)])
    assert list(got) == [key("g", 2)] and got[key("g", 2)]["response"] == "r2 by 0"  # first write wins


def _writer(path: str, writer: int, n: int) -> None:
    store = Store(path)
    for i in range(n):
        store.put_generations([_row(i, writer), _row(10_000 + writer * n + i, writer)])
        store.put_judgments([{"key": key("j", i), "judge": "k", "generation": key("g", i), "verdict": {"w": writer}}])
    store.close()


def test_two_processes_share_one_store(tmp_path):
    path = str(tmp_path / "shared.sqlite")
    Store(path).close()
    procs = [mp.get_context("spawn").Process(target=_writer, args=(path, w, 200)) for w in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    # 200 shared keys written by both, plus 200 own keys each; no duplicates, none lost.
    assert db.execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM generations").fetchone() == (600, 600)
    assert db.execute("SELECT COUNT(*) FROM judgments").fetchone()[0] == 200


def _judgment(i: int, verdict: dict) -> dict:
    return {"key": key("j", i), "judge": "k", "generation": key("g", i), "verdict": verdict}


def _shard(path, rows: list[int], writer: int = 0, runs: tuple = ()) -> Store:
    shard = Store(path)
    shard.put_generations([_row(i, writer) for i in rows])
    shard.put_judgments([_judgment(i, {"harmful": writer == 9}) for i in rows])
    for out, results in runs:
        shard.put_run(out, results)
    shard.close()
    return path


def _dump(path) -> dict:
    db = sqlite3.connect(path)
    tables = ("generations", "judgments", "runs", "validations", "merge_conflicts")
    return {t: sorted(db.execute(f"SELECT * FROM {t}").fetchall()) for t in tables}


RESULT = {
    "schema_version": "1.1",
    "model": {"name": "m", "backend": "hf", "fingerprint": "f" * 16},
    "tasks": {"smoke": {"spec_hash": "s", "sample_ids_hash": "i"}},
    "seed": 0,
}


def test_merging_shards_gives_the_union_keeps_first_values_and_sets_conflicts_aside(tmp_path):
    a = _shard(tmp_path / "a.sqlite", [1, 2, 3], runs=[("/node-a/run", RESULT)])
    b = _shard(tmp_path / "b.sqlite", [3, 4], runs=[("/node-b/run", RESULT)])  # the same run, another machine's path
    c = _shard(tmp_path / "c.sqlite", [2, 5], writer=9)  # key 2 answered differently on another machine
    store = Store(tmp_path / "study.sqlite")
    assert store.merge(a)["generations"] == {"added": 3, "present": 0, "conflicts": 0}
    got = store.merge(b)
    assert got["generations"] == got["judgments"] == {"added": 1, "present": 1, "conflicts": 0}
    assert got["runs"] == {"added": 0, "present": 0, "replaced": 1}  # keyed by run id: one run; the newer row wins
    assert [out for out, _ in store.get_runs()] == ["/node-b/run"]
    got = store.merge(c)
    assert got["generations"] == got["judgments"] == {"added": 1, "present": 0, "conflicts": 1}
    assert store.get_generations([key("g", 2)])[key("g", 2)]["response"] == "r2 by 0"  # the first value is kept
    lost = store.db.execute("SELECT tbl, key, lost, source FROM merge_conflicts ORDER BY tbl").fetchall()
    assert [(t, k) for t, k, _, _ in lost] == [("generations", key("g", 2)), ("judgments", key("j", 2))]
    assert json.loads(lost[0][2])["response"] == "r2 by 9" and lost[0][3] == str(c)  # the other value, kept aside
    assert store.count("generations") == 5
    store.close()
    before = _dump(tmp_path / "study.sqlite")
    store = Store(tmp_path / "study.sqlite")
    for shard in (a, b, c):  # merging again changes nothing
        counts = store.merge(shard)
        assert counts["generations"]["added"] == counts["judgments"]["added"] == counts["runs"]["added"] == 0
    store.close()
    assert _dump(tmp_path / "study.sqlite") == before


def test_a_corrupt_or_foreign_shard_is_refused_before_anything_is_written(tmp_path):
    from typer.testing import CliRunner

    from safeeval.cli import app

    good = _shard(tmp_path / "good.sqlite", [1, 2])
    torn = _shard(tmp_path / "torn.sqlite", range(300))  # many pages: a torn write lands inside one
    data = bytearray(torn.read_bytes())
    page = 4096
    data[3 * page : 4 * page] = b"\xff" * page
    torn.write_bytes(bytes(data))
    newer = _shard(tmp_path / "newer.sqlite", [1])
    sqlite3.connect(newer).execute("PRAGMA user_version = 99").connection.close()
    (tmp_path / "notes.txt").write_text("not a database")
    into = tmp_path / "study.sqlite"
    runner = CliRunner()
    for bad, said in [
        (torn, "integrity check"),
        (newer, "newer safeeval (store version 99"),
        (tmp_path / "notes.txt", "integrity check (file is not a database)"),
        (tmp_path / "none.sqlite", "No store"),
    ]:
        got = runner.invoke(app, ["store", "merge", str(good), str(bad), "--into", str(into)])
        assert got.exit_code == 2 and said in " ".join(got.output.split()), got.output
        assert not into.exists() or Store(into).count("generations") == 0  # the good shard was not merged either
    got = runner.invoke(app, ["store", "merge", str(good), "--into", str(into)])
    assert got.exit_code == 0 and Store(into).count("generations") == 2, got.output
    assert "already present" in got.output


def test_an_old_store_opens_upgraded_and_still_lists_its_runs(tmp_path):
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)  # a store as safeeval wrote them before store versions: runs keyed by folder
    db.executescript("""
        CREATE TABLE generations (key TEXT PRIMARY KEY, model TEXT NOT NULL, backend TEXT NOT NULL,
            params TEXT NOT NULL, prompt TEXT NOT NULL, response TEXT NOT NULL, finish_reason TEXT,
            n_tokens INTEGER, created REAL NOT NULL);
        CREATE TABLE judgments (key TEXT PRIMARY KEY, judge TEXT NOT NULL, generation TEXT NOT NULL,
            verdict TEXT NOT NULL, created REAL NOT NULL);
        CREATE TABLE runs (out TEXT PRIMARY KEY, results TEXT NOT NULL, created REAL NOT NULL);
        CREATE TABLE validations (judge TEXT NOT NULL, labels TEXT NOT NULL, report TEXT NOT NULL,
            created REAL NOT NULL, PRIMARY KEY (judge, labels));""")
    db.execute("INSERT INTO runs VALUES (?, ?, ?)", ("/home/me/runs/a", json.dumps(RESULT), 1.0))
    db.execute("INSERT INTO generations VALUES (?, 'm', 'hf', '{}', 'p', 'old answer', 'stop', 2, 1.0)", (key("g", 1),))
    db.commit()
    db.close()
    store = Store(path)
    assert store.get_runs() == [("/home/me/runs/a", RESULT)]
    assert store.get_generations([key("g", 1)])[key("g", 1)]["response"] == "old answer"
    store.put_run("/mnt/shared/runs/a", RESULT)  # the same run, scored again elsewhere: its row, replaced
    assert [out for out, _ in store.get_runs()] == ["/mnt/shared/runs/a"]
    store.put_run("/mnt/shared/runs/b", {**RESULT, "seed": 1})
    assert store.count("runs") == 2
    store.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == STORE_VERSION


def test_a_redirected_store_writes_its_shard_and_reads_what_it_lacks_upstream(tmp_path):
    study = tmp_path / "study.sqlite"
    upstream = Store(study)
    upstream.put_generations([_row(1)])
    upstream.put_validation("k", "labels", {"kappa": 0.9})
    with redirect(study, tmp_path / "shard.sqlite", upstream):
        store = Store(study)
        store.put_generations([_row(2)])
        assert set(store.get_generations([key("g", 1), key("g", 2), key("g", 3)])) == {key("g", 1), key("g", 2)}
        assert store.get_validation("k") == {"kappa": 0.9} and store.path == study
        store.close()
    assert upstream.count("generations") == 1  # the study's store is only read
    assert Store(tmp_path / "shard.sqlite").count("generations") == 1
    upstream.close()
