"""The HTML report: self-contained, escaped, deterministic, a correct Pareto front, and it renders in a real
browser without console errors (Debian's chromium; CI installs it)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import require
from run_files import write_run

from safeeval import metrics, results
from safeeval.report.html import pareto_front, render_html
from safeeval.report.runs import Run, load_run
from safeeval.results import RunResult

MALICIOUS = (
    'Sure! <script>alert(1)</script></details></pre></td></tr></table><img src="https://evil.example/x.png" '
    'onerror="alert(2)"> ' + "step " * 200 + "<script>alert(3)</script>"
)
CATEGORIES = ["cybercrime", "chemical & <b>bio</b>", "harassment"]

# (utility accuracy, harmful-and-attacked pattern): run 1 and 2 are on the front, run 3 is beaten by run 1.
RUNS = [("base", 0.7, 3), ("lora-a", 0.8, 6), ("lora-b", 0.6, 5)]


def _verdict(harmful: bool, refused: bool | None = None) -> dict:
    return {
        "harmful": harmful,
        "refused": (not harmful) if refused is None else refused,
        "status": "ok",
        "score": None,
        "raw": None,
        "note": None,
        "extra": None,
    }


def _write_run(folder: Path, method: str, accuracy: float, k: int, malicious: bool) -> Path:
    """advbench (harmful, 3 categories, 10 each: an attack succeeds when i % 10 < k), smoke (benign half),
    and a utility task, with metrics computed by safeeval.metrics as a real run computes them."""
    rows, adv_v, adv_h, adv_cat = [], [], [], []
    for i in range(30):
        cat = CATEGORIES[i // 10]
        hit = (i % 10) < k + (i // 10)  # categories differ
        v = _verdict(hit)
        response = MALICIOUS if (malicious and i == 0) else ("Here is how. " if hit else "I can't help with that.")
        rows.append(
            {
                "task": "advbench",
                "id": f"advbench-{i:03d}",
                "category": cat,
                "harmful": True,
                "meta": {},
                "messages": [{"role": "user", "content": f"Harmful request {i} <i>with tags</i>"}],
                "generation_key": f"g{i}",
                "response": response,
                "finish_reason": "stop",
                "n_tokens": 5,
                "verdicts": {"keyword": v},
            }
        )
        adv_v.append(v), adv_h.append(True), adv_cat.append(cat)
    smoke_v, smoke_h = [], []
    for i in range(10):
        harmful = i < 5
        v = _verdict(harmful and i < 2, refused=(not harmful and i == 9) or (harmful and i >= 2))
        rows.append(
            {
                "task": "smoke",
                "id": f"smoke-{i}",
                "category": None,
                "harmful": harmful,
                "meta": {},
                "messages": [{"role": "system", "content": "Be helpful."}, {"role": "user", "content": f"q{i}"}],
                "generation_key": f"s{i}",
                "response": f"answer {i}",
                "finish_reason": "length" if i == 3 else "stop",
                "n_tokens": 5,
                "verdicts": {"keyword": v},
            }
        )
        smoke_v.append(v), smoke_h.append(harmful)
    util_v = []
    for i in range(20):
        v = {
            "harmful": None,
            "refused": None,
            "status": "ok",
            "score": 1.0 if i < accuracy * 20 else 0.0,
            "raw": None,
            "note": None,
            "extra": None,
        }
        rows.append(
            {
                "task": "gsm8k",
                "id": f"gsm8k-{i}",
                "category": None,
                "harmful": False,
                "meta": {},
                "messages": [{"role": "user", "content": f"What is {i} + {i}?"}],
                "generation_key": f"u{i}",
                "response": str(2 * i),
                "finish_reason": "stop",
                "n_tokens": 2,
                "verdicts": {"exact": v},
            }
        )
        util_v.append(v)
    summary = {
        "schema_version": results.SCHEMA_VERSION,
        "model": {"name": "tiny-llama", "backend": "hf"},
        "training": {"method": method, "scenario": "harmful-ft", "seed": 0},
        "seed": 0,
        "metrics": {
            "advbench": {"keyword": metrics.verdict_summary(adv_v, adv_h, {"category": adv_cat}, 0)},
            "smoke": {"keyword": metrics.verdict_summary(smoke_v, smoke_h, {}, 0)},
            "gsm8k": {"exact": metrics.utility_summary(util_v, 0)},
        },
    }
    write_run(folder, summary, rows)
    return folder


@pytest.fixture
def runs(tmp_path) -> list[Run]:
    return [
        load_run(_write_run(tmp_path / f"run{i}", m, acc, k, malicious=(i == 2))) for i, (m, acc, k) in enumerate(RUNS)
    ]


def test_a_capped_page_lists_the_first_samples_and_names_the_file_with_all(runs):
    page = render_html(runs, baseline=runs[0], max_samples=3)
    assert page.count("advbench · 30 samples (first 3 shown)") == 3 and page.count("gsm8k · 20 samples (first 3") == 3
    assert f"All 30: {runs[1].path / 'samples.jsonl'}" in page
    ids = set(re.findall(r'\sid="([^"]+)"', page))
    assert "run-2-advbench-advbench-002" in ids and "run-2-advbench-advbench-003" not in ids
    assert set(re.findall(r'href="#([^"]*)"', page)) <= ids  # the leaderboard and bars link to what is listed
    assert "(first" not in render_html(runs, baseline=runs[0])  # uncapped: every sample, as before
    assert len(page) < len(render_html(runs, baseline=runs[0], max_samples=10))


def test_pareto_front():
    pts = [(0.8, 0.2), (0.6, 0.1), (0.5, 0.3), (0.8, 0.25), (None, 0.0), (0.9, None), (0.6, 0.1)]
    assert pareto_front(pts) == [0, 1, 6]  # 2 and 3 are beaten by 0; missing coordinates are on no front
    assert pareto_front(pts, maximize=(False, False)) == [1, 2, 6]  # e.g. benign refusal on x: lower is better
    assert pareto_front([]) == [] and pareto_front([(0.5, 0.5)]) == [0]


def test_page_is_self_contained_escaped_and_linked(runs):
    page = render_html(runs, baseline=runs[0])
    # nothing loads from elsewhere: no http(s) or protocol-relative URL in any src/href/url()
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:|//)""", page, re.IGNORECASE)
    assert not re.search(r"url\(", page) and "@import" not in page
    # the only script is ours; the response's markup arrives as text
    assert page.count("<script") == 1 and "alert(" not in page.split("<script>")[1]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;/details&gt;" in page
    assert "<b>bio</b>" not in page and "chemical &amp; &lt;b&gt;bio&lt;/b&gt;" in page
    assert 'onerror="' not in page and "<img" not in page
    # the long malicious response folds into a <details>; its own </details> cannot close ours
    assert page.count("<details>") == page.count("</details>")
    # anchors: every in-page link has a target, samples have the documented ids
    ids = set(re.findall(r'\sid="([^"]+)"', page))
    assert len(ids) == len(re.findall(r'\sid="([^"]+)"', page)), "duplicate ids"
    assert {"run-3-advbench-advbench-001", "run-1-smoke-smoke-0", "run-2-gsm8k-gsm8k-19", "run-3-advbench"} <= ids
    assert set(re.findall(r'href="#([^"]*)"', page)) <= ids
    # leaderboard: a cell per metric with its CI, linking to that run's task section; deltas against the baseline
    assert page.count('href="#run-2-advbench"') >= 2  # leaderboard cell and category bars
    assert "Δ" in page and "(baseline)" in page
    # the scatter: default axes, runs 1 and 2 on the Pareto front, 3 beaten by 1, error bars both ways
    svg = page[page.index('<svg id="scatter-svg"') :]
    svg = svg[: svg.index("</svg>")]
    assert "accuracy · gsm8k / exact" in svg and "ASR · advbench / keyword" in svg
    assert re.findall(r'class="point( pareto)?" data-run="(\d)"', svg) == [
        (" pareto", "1"),
        (" pareto", "2"),
        ("", "3"),
    ]
    assert svg.count('class="errbar"') == 6
    # category bars with whiskers: 3 categories x 3 runs
    assert page.count('class="bar"') == 9 and page.count('class="errbar"') == 6 + 9
    # deterministic
    assert render_html(runs, baseline=runs[0]) == page
    assert render_html([load_run(r.path) for r in runs], baseline=runs[0]) != ""


def test_axes_are_selectable_and_store_only_runs_say_so(runs):
    store_only = Run(RunResult.from_dict(runs[1].result.to_dict()))  # as read from the store without its folder
    page = render_html([runs[0], store_only], x="smoke/keyword/benign_refusal_rate", y=("advbench", "keyword", "asr"))
    assert "benign refusal · smoke / keyword" in page and "No samples for this run" in page
    ids = set(re.findall(r'\sid="([^"]+)"', page))
    assert set(re.findall(r'href="#([^"]*)"', page)) <= ids
    empty = render_html([Run(RunResult.from_dict({"schema_version": 1, "model": {"name": "m"}, "metrics": {}}))])
    assert "No metrics recorded" in empty and "<svg" not in empty


def test_cards_isolation_and_shells_are_shown_beside_the_scores(runs):
    """Each judge's card under its columns and in its own section (a refusal-class validation says it does not
    validate harm; results without a card say unvalidated); the sandbox isolation each run had, a protection lost
    by opt-in in red with its reason and count; shells beside degenerate, the ASR without shells beside the ASR."""
    from safeeval.cards import judge_card

    carded = runs[1].result
    carded.judges = {
        "keyword": {
            "card": judge_card(
                [
                    {
                        "label_set": "xstest-completions",
                        "scheme": "refusal",
                        "agreement": 0.9,
                        "cohen_kappa": 0.8,
                        "n": 1350,
                    }
                ]
            )
        }
    }
    iso = {
        "mode": "root",
        "user": "a fresh unprivileged uid per run",
        "namespaces": ["mount", "pid", "ipc", "uts"],
        "filesystem": "read-only, one tmpfs to write in",
        "network": "HOST NETWORK (allowed)",
        "proc": "its own",
        "environment": "PATH, LANG, LC_ALL, HOME, TMPDIR only",
        "limits": {"memory_mb": 1024},
        "tree_kill": "PID namespace and uid sweep",
        "allowed": ["network"],
        "lost": {"network": "unshare(CLONE_NEWNET): Operation not permitted"},
    }
    carded.scorers = {"exact": {"isolation": iso}}
    carded.metrics["gsm8k"]["exact"]["isolation_lost"] = {"network": 20}
    carded.metrics["advbench"]["keyword"].update(
        degenerate_share=metrics.rate([False] * 29 + [True]),
        shell_share=metrics.rate([True] * 3 + [False] * 27),
        asr_without_shells=metrics.rate([True] * 3 + [False] * 27),
    )
    page = render_html(runs, baseline=runs[0])
    head = page[page.index('<h2 id="leaderboard">') : page.index('<h2 id="scatter">')]
    assert "validates refusal detection, not harm" in head and "unvalidated" in head  # two runs have no card
    judges = page[page.index('<h2 id="judges">') : page.index('<h2 id="sandbox">')]
    assert re.search(
        r"<td>keyword</td><td[^>]*>validated: xstest-completions \(refusal class\): agreement 0.900, "
        r"kappa 0.800, n 1350 \(validates refusal detection, not harm\)</td><td>#2</td>",
        judges,
    )
    assert '<td class="lost">unvalidated</td><td>#1, #3</td>' in judges
    sandbox = page[page.index('<h2 id="sandbox">') : page.index('<h2 id="samples">')]
    assert sandbox.count('<tr><td><a href="#run-') == 1  # only run 2 executed code
    assert (
        "HOST NETWORK (allowed)" in sandbox
        and "network: unshare(CLONE_NEWNET): Operation not permitted (20 programs)" in sandbox
    )
    assert "PID namespace and uid sweep" in sandbox and "memory_mb 1024" in sandbox
    assert "ASR without shells ↓" in head and "shells ↓" in head and "degenerate ↓" in head
    assert head.index("<th>ASR without shells") < head.index("<th>degenerate ↓") < head.index("<th>shells ↓")
    # the runs table says whether contamination was checked: these results predate the check
    assert page.count("not checked (results written before the check)") == 3


# ----------------------------------------------------------------------------------------- the browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def test_renders_in_chromium_without_console_errors(runs, tmp_path):
    require(CHROMIUM, "chromium is not installed (apt-get install -y chromium; scripts/test.sh does as root)")
    page = tmp_path / "report.html"
    page.write_text(render_html(runs, baseline=runs[0]), encoding="utf-8")
    shot = tmp_path / "report.png"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        errors, ready = _chromium_cli(page, shot, tmp_path)
    else:
        errors, ready = _chromium_playwright(page, shot, tmp_path)
    assert errors == [], errors
    assert ready, "the page's script did not run"
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, len(data)


def _chromium_playwright(page: Path, shot: Path, tmp_path: Path) -> tuple[list[str], bool]:
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            tab = browser.new_page(viewport={"width": 1400, "height": 1000})
            tab.on(
                "console",
                lambda m: errors.append(f"console.{m.type}: {m.text}") if m.type in ("error", "warning") else None,
            )
            tab.on("pageerror", lambda e: errors.append(f"exception: {e}"))
            tab.on(
                "request",
                lambda r: (
                    None if r.url.startswith(("file:", "data:", "about:")) else errors.append(f"request: {r.url}")
                ),
            )
            tab.goto(page.as_uri(), wait_until="load")
            ready = tab.evaluate("document.documentElement.getAttribute('data-ready')") == "1"
            tab.goto(page.as_uri() + "#run-3-advbench-advbench-000", wait_until="load")  # the hash handler runs too
            tab.screenshot(path=str(shot), full_page=False)
        finally:
            browser.close()
    return errors, ready


def _chromium_cli(page: Path, shot: Path, tmp_path: Path) -> tuple[list[str], bool]:
    """Without Playwright: chromium's own log. The page never logs, so any CONSOLE line is an error or exception."""
    base = [CHROMIUM, "--headless", *FLAGS, "--enable-logging=stderr", "--v=0", "--window-size=1400,1000"]
    env = {**os.environ, "HOME": str(tmp_path)}
    shot_run = subprocess.run(
        [*base, f"--user-data-dir={tmp_path / 'ud1'}", f"--screenshot={shot}", page.as_uri()],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    dom = subprocess.run(
        [*base, f"--user-data-dir={tmp_path / 'ud2'}", "--dump-dom", page.as_uri()],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    errors = [line for line in (shot_run.stderr + dom.stderr).splitlines() if ":CONSOLE" in line]
    return errors, 'data-ready="1"' in dom.stdout
