"""`safeeval score` end to end on a tiny model: results, resumption, interruption and clear errors."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from safeeval.cli import app
from safeeval.run import ScoreConfig, score

runner = CliRunner()


def _cfg(tiny_model, tmp_path, **kw) -> ScoreConfig:
    base = dict(
        model=str(tiny_model),
        tasks=["smoke"],
        max_new_tokens=8,
        out=tmp_path / "run",
        store=tmp_path / "store.sqlite",
        backend_options={"batch_size": 8},
    )
    return ScoreConfig(**{**base, **kw})


def test_results_and_samples_are_complete(tiny_model, tmp_path, data_dir):
    cfg = _cfg(tiny_model, tmp_path, tasks=["smoke", "harmbench:val"], data_dir=data_dir, limit=30)
    res = score(cfg)
    assert res.schema_version == "1.1"
    assert res.model.backend == "hf" and len(res.model.fingerprint) == 16
    assert set(res.tasks) == {"smoke", "harmbench:val"} and res.tasks["harmbench:val"].n_samples == 30
    assert "sha256:" in res.tasks["harmbench:val"].source
    assert {"torch", "transformers", "python"} <= set(res.versions)
    assert "; torch " in res.versions["cpu"]  # the kernels the scores came from: another CPU gives other numbers
    hb = res.metrics["harmbench:val"]["keyword"]
    copyright_n = sum(
        1
        for line in open(tmp_path / "run" / "samples.jsonl")
        if json.loads(line)["meta"].get("functional_category") == "copyright"
    )
    assert copyright_n > 0 and hb["not_judged"] == copyright_n  # reported as not judged, never as safe
    assert hb["n_judged"] + hb["not_judged"] == hb["n_harmful"] == 30
    assert set(hb["by"]) == {"category", "semantic_category", "functional_category"}
    smoke = res.metrics["smoke"]["keyword"]
    assert smoke["n_harmful"] + smoke["n_benign"] == 30 and smoke["benign_refusal_rate"]["n"] == smoke["n_benign"] > 0
    assert smoke["asr"]["ci_low"] <= smoke["asr"]["value"] <= smoke["asr"]["ci_high"]
    rows = [json.loads(line) for line in open(tmp_path / "run" / "samples.jsonl")]
    assert len(rows) == 60
    assert all(
        r["response"] is not None and "keyword" in r["verdicts"] and r["messages"][-1]["role"] == "user" for r in rows
    )
    on_disk = json.loads((tmp_path / "run" / "results.json").read_text())
    assert on_disk["metrics"] == res.metrics


def test_rerun_generates_nothing_and_a_new_judge_only_judges(tiny_model, tmp_path):
    first = score(_cfg(tiny_model, tmp_path))
    assert first.counts["generated_now"] == 40 and first.counts["judged_now"] == 40
    again = score(_cfg(tiny_model, tmp_path))
    assert again.counts["generated_now"] == 0 and again.counts["judged_now"] == 0
    assert again.metrics == first.metrics
    more = score(_cfg(tiny_model, tmp_path, judges=["keyword", "keyword:llm-attacks-short"]))
    assert more.counts["generated_now"] == 0 and more.counts["judged_now"] == 40
    # A different setting is a different generation: never a stale hit.
    other = score(_cfg(tiny_model, tmp_path, max_new_tokens=9))
    assert other.counts["generated_now"] == 40


def test_system_prompt_changes_the_cache_key(tiny_model, tmp_path):
    score(_cfg(tiny_model, tmp_path))
    res = score(_cfg(tiny_model, tmp_path, system_prompt="Be safe."))
    assert res.counts["generated_now"] == 40
    row = json.loads(open(tmp_path / "run" / "samples.jsonl").readline())
    assert row["messages"][0] == {"role": "system", "content": "Be safe."}


def _cli(tiny_model, tmp_path, data_dir, *extra) -> list[str]:
    return [
        sys.executable,
        "-m",
        "safeeval",
        "score",
        "--model",
        str(tiny_model),
        "--tasks",
        "advbench",
        "--limit",
        "60",
        "--batch-size",
        "1",
        "--max-new-tokens",
        "24",
        "--data-dir",
        str(data_dir),
        "--store",
        str(tmp_path / "store.sqlite"),
        "--out",
        str(tmp_path / "run"),
        *extra,
    ]


def _count(db_path: Path) -> int:
    try:
        with sqlite3.connect(db_path, timeout=30) as db:
            return db.execute("SELECT COUNT(*) FROM generations").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def _start_and_wait(cmd, db_path, at_least: int) -> subprocess.Popen:
    # A shell starting the tests in the background (`cmd &`) leaves SIGINT ignored, and the child would inherit
    # that: give it the default, as a terminal's Ctrl-C finds it.
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 120
    while _count(db_path) < at_least:
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "no generations appeared"
        time.sleep(0.2)
    return proc


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_interrupted_run_resumes_without_loss_or_duplicates(tiny_model, tmp_path, data_dir, sig):
    cmd = _cli(tiny_model, tmp_path, data_dir)
    proc = _start_and_wait(cmd, tmp_path / "store.sqlite", at_least=5)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=180)  # generous: a loaded 2-core CI machine is slow to unwind
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "run the same command again to resume" in err
        assert "Traceback" not in err
    else:
        assert proc.returncode == -9
    saved = _count(tmp_path / "store.sqlite")
    assert 5 <= saved < 60
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert res["counts"]["generated_now"] == 60 - saved  # nothing regenerated
    with sqlite3.connect(tmp_path / "store.sqlite") as db:
        assert db.execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM generations").fetchone() == (60, 60)
    rows = [json.loads(line) for line in open(tmp_path / "run" / "samples.jsonl")]
    assert len(rows) == 60 and len({r["id"] for r in rows}) == 60


def _fails_cleanly(args, *needles):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    text = " ".join(result.output.split())  # rich wraps long lines
    for needle in needles:
        assert needle in text, text
    assert "Traceback" not in result.output


def test_bad_input_gets_one_clear_sentence(tiny_model, tiny_model_no_template, tmp_path, data_dir):
    base = ["score", "--store", str(tmp_path / "s.sqlite"), "--out", str(tmp_path / "o")]
    _fails_cleanly(
        [*base, "--model", str(tiny_model), "--tasks", "advbnch"],
        "Unknown task 'advbnch'",
        "Valid tasks: advbench,",
        "harmbench",
    )
    _fails_cleanly([*base, "--model", str(tiny_model), "--judges", "gpt5"], "Unknown judge 'gpt5'", "keyword")
    _fails_cleanly([*base, "--model", str(tiny_model), "--backend", "tgi"], "Unknown backend 'tgi'", "hf, vllm, openai")
    _fails_cleanly([*base, "--model", str(tmp_path / "missing-model")], "does not exist")
    _fails_cleanly([*base, "--model", str(tiny_model_no_template)], "no chat template", "--chat-template")
    _fails_cleanly(
        [*base, "--model", str(tiny_model), "--tasks", "advbench", "--data-dir", str(tmp_path)],
        "No data for task 'advbench'",
        str(tmp_path / "advbench"),
    )
    _fails_cleanly(
        [*base, "--model", "tiny", "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1"], "127.0.0.1:9"
    )


def test_help_teaches_with_examples():
    result = runner.invoke(app, ["score", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "safeeval score --model smollm2 --tasks smoke" in result.output
    assert "harmbench:val" in result.output and "--data-dir" in result.output


def test_score_through_an_endpoint_never_records_the_key(tmp_path, monkeypatch):
    from fault_server import FaultServer

    secret = "sk-test-SECRET-1234567890"
    monkeypatch.setenv("MY_ENDPOINT_KEY", secret)
    with FaultServer() as srv:
        srv.script(["429", "500"], default="ok")  # retried by the client, invisible in the results
        result = runner.invoke(
            app,
            [
                "score",
                "--backend",
                "openai",
                "--model",
                "served",
                "--base-url",
                srv.base_url,
                "--api-key-env",
                "MY_ENDPOINT_KEY",
                "--tasks",
                "smoke",
                "--concurrency",
                "4",
                "--store",
                str(tmp_path / "s.sqlite"),
                "--out",
                str(tmp_path / "run"),
            ],
        )
        assert result.exit_code == 0, result.output
        assert srv.auth_headers[-1] == f"Bearer {secret}"  # the key was used ...
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert res["counts"]["generated_now"] == 40 and res["model"]["backend"] == "openai"
    assert json.loads(open(tmp_path / "run" / "samples.jsonl").readline())["response"].startswith("echo: ")
    # ... and written nowhere.
    for path in [tmp_path / "run" / "results.json", tmp_path / "run" / "samples.jsonl", tmp_path / "s.sqlite"]:
        assert secret not in path.read_bytes().decode("utf-8", "replace")
    assert secret not in result.output


def test_a_task_named_twice_is_scored_once(data_dir):
    from safeeval.run import prepare

    prep = prepare(
        ScoreConfig(
            model="unused",
            tasks=["harmbench", "harmbench:test", "smoke", "smoke"],
            judges=["keyword", "keyword"],
            data_dir=data_dir,
        )
    )
    assert [label for label, _, _ in prep.tasks] == ["harmbench:test", "smoke"]
    assert len(prep.judges) == 1


def test_a_judge_that_cannot_run_stops_cleanly_and_keeps_generations(tiny_model, tmp_path):
    base = [
        "score",
        "--model",
        str(tiny_model),
        "--tasks",
        "smoke",
        "--max-new-tokens",
        "4",
        "--store",
        str(tmp_path / "store.sqlite"),
        "--out",
        str(tmp_path / "run"),
    ]
    # A judge model that cannot be found stops the run before anything is generated.
    _fails_cleanly([*base, "--judges", "llama-guard"], "meta-llama/Llama-Guard-3-8B", "could not be fetched")
    # A judge endpoint that is down stops the judging; the generations made before it stay in the store.
    _fails_cleanly(
        [
            *base,
            "--judges",
            "rubric",
            "--judge-backend",
            "openai",
            "--judge-model",
            "rubric=gpt-x",
            "--judge-base-url",
            "http://127.0.0.1:9/v1",
        ],
        "127.0.0.1:9",
        "Is the server running?",
    )
    res = score(_cfg(tiny_model, tmp_path, max_new_tokens=4, out=tmp_path / "run2"))
    assert res.counts["generated_now"] == 0 and res.counts["judged_now"] == 40


def test_an_unwritable_output_is_one_sentence(tiny_model, tmp_path):
    missing = tmp_path / "no" / "such" / "folder"
    (tmp_path / "no").write_text("a file where a folder should be")
    _fails_cleanly(
        [
            "score",
            "--model",
            str(tiny_model),
            "--tasks",
            "smoke",
            "--limit",
            "2",
            "--max-new-tokens",
            "2",
            "--store",
            str(tmp_path / "s.sqlite"),
            "--out",
            str(missing),
        ],
        "cannot use",
        str(tmp_path / "no"),
    )
    score(_cfg(tiny_model, tmp_path, limit=2, max_new_tokens=2, store=tmp_path / "s.sqlite"))
    _fails_cleanly(["leaderboard", str(tmp_path / "run"), "--output", str(missing / "b.csv")], "cannot use")
    _fails_cleanly(
        [
            "check",
            "--baseline",
            str(tmp_path / "run"),
            "--candidate",
            str(tmp_path / "run"),
            "--junit",
            str(missing / "gate.xml"),
        ],
        "cannot use",
    )


def test_summary_shows_each_judges_card_the_shells_and_a_protection_given_up(monkeypatch):
    """Beside the scores: each judge's card (a refusal-class validation says it validates refusal detection, not
    harm; results without a card are unvalidated), the shells beside degenerate responses with the ASR without
    them, and a sandbox protection lost by the user's opt-in."""
    import io

    from rich.console import Console

    from safeeval import metrics
    from safeeval.cards import judge_card
    from safeeval.cli import ui
    from safeeval.cli.score import print_summary
    from safeeval.results import RunResult

    verdicts = [{"harmful": i < 6, "refused": i >= 6, "status": "ok"} for i in range(10)]
    shells = [i < 2 for i in range(10)]
    block = metrics.verdict_summary(verdicts, [True] * 10, {}, 0, None, [False] * 9 + [True], shells)
    util = metrics.utility_summary([{"status": "ok", "score": 1.0}] * 4, 0)
    util["isolation_lost"] = {"network": 4}
    refusal_only = judge_card(
        [{"label_set": "xstest-completions", "scheme": "refusal", "agreement": 0.9, "cohen_kappa": 0.8, "n": 1350}]
    )
    result = RunResult.from_dict(
        {
            "schema_version": "1.1",
            "model": {"name": "m", "backend": "hf", "fingerprint": "f"},
            "metrics": {"advbench": {"keyword": block, "refusal": block}, "humaneval": {"humaneval": util}},
            "judges": {"keyword": {"kind": "keyword"}, "refusal": {"card": refusal_only}},
            "scorers": {"humaneval": {"isolation": {"lost": {"network": "unshare: Operation not permitted"}}}},
            "degeneration": {
                "advbench": {"n": 10, "counts": {"shell": 2}, "degenerate": metrics.rate([False] * 9 + [True])}
            },
            "counts": {"samples": 14, "generated_now": 0, "judged_now": 0, "truncated": 0},
        }
    )
    out = io.StringIO()
    monkeypatch.setattr(ui, "out_console", Console(file=out, width=300, color_system=None))
    print_summary(result)
    text = out.getvalue()
    assert "judge keyword: unvalidated" in text  # no card recorded: never blank
    assert (
        "judge refusal: validated: xstest-completions (refusal class): agreement 0.900, kappa 0.800, n 1350 "
        "(validates refusal detection, not harm)"
    ) in text
    assert "advbench 10.0%" in text and "shells (an affirmative opening and nothing more" in text
    assert "advbench 2 of 10 (ASR without shells: keyword 40.0 [" in text and ", refusal 40.0 [" in text
    assert (
        "note: humaneval's sandbox ran without network isolation (4 programs; allowed by --sandbox-allow "
        "network): unshare: Operation not permitted"
    ) in text


def test_cpu_names_the_processor_and_its_bfloat16_instructions(tmp_path):
    from safeeval.results import cpu

    info = tmp_path / "cpuinfo"
    flags = "fpu avx2 avx512f avx512_bf16 amx_tile amx_bf16"
    info.write_text(
        f"processor\t: 0\nmodel name\t: Test CPU 9\nflags\t\t: {flags}\n\nprocessor\t: 1\nmodel name\t: other\n"
    )
    got = cpu(info).split("; ")
    assert got[0] == "Test CPU 9" and got[-2:] == ["amx_bf16", "avx512_bf16"]
    assert cpu(tmp_path / "missing").split("; ")[0]  # no /proc/cpuinfo (macOS): still names the machine
