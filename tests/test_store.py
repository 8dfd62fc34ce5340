"""The store's writes are idempotent and safe to share between processes."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3

from safeeval.keys import key
from safeeval.store import Store


def _row(i: int, writer: int = 0) -> dict:
    return {"key": key("g", i), "model": "m", "backend": "hf", "params": {"t": 0}, "prompt": f"p{i}",
            "response": f"r{i} by {writer}", "finish_reason": "stop", "n_tokens": 3}


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
