"""The code sandbox never loses a protection quietly: where the system cannot give one, it refuses to run
(one sentence naming the protection and how to get it), unless the user explicitly allows running without
it; and results.json records the isolation the programs actually had.

The refusals are produced for real, not by editing the launcher or mocking unshare:
- no network namespace: a user namespace whose `user.max_net_namespaces` is 0 (a per-user-namespace kernel
  limit; the host's value is untouched), for root in it and for an unprivileged user in it;
- no /proc of its own: a mount namespace with a tmpfs over part of /proc, as containers mask /proc, which
  makes the kernel refuse a new proc mount to anyone but real root.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require

from safeeval.errors import SafeevalError
from safeeval.scoring import sandbox
from safeeval.scoring.humaneval import HumanEvalScorer
from safeeval.scoring.sandbox import ALLOWABLE, PROTECTIONS, run_program

REPO = Path(__file__).resolve().parents[1]
SYSTEM_PYTHON = "/usr/bin/python3"  # readable by 'nobody' (this venv's Python may live under /root)
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]

# Runs argv[1:] as root of a new user namespace that maps every uid and gid to itself (so the sandbox's
# uid pool works in it) and may create no network namespace.
NO_NETNS = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
ready_r, ready_w = os.pipe()
go_r, go_w = os.pipe()
pid = os.fork()
if pid == 0:
    if libc.unshare(0x10000000) != 0:  # CLONE_NEWUSER
        os._exit(90)
    os.write(ready_w, b"1")
    os.read(go_r, 1)
    with open("/proc/sys/user/max_net_namespaces", "w") as f:
        f.write("0")
    os.execvp(sys.argv[1], sys.argv[1:])
os.read(ready_r, 1)
for name in ("uid_map", "gid_map"):
    with open("/proc/%d/%s" % (pid, name), "w") as f:
        f.write("0 0 4294967295")
os.write(go_w, b"1")
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""

# Imports the sandbox straight from this checkout (safeeval's __init__ would pull in torch), then runs one
# program with each setting of `allow` and prints what happened as JSON.
PROBE = r"""
import json, sys, types
for name, path in (("safeeval", {repo!r} + "/safeeval"), ("safeeval.scoring", {repo!r} + "/safeeval/scoring")):
    m = types.ModuleType(name); m.__path__ = [path]; sys.modules[name] = m
from safeeval.errors import SafeevalError
from safeeval.scoring.sandbox import run_program
out = {{}}
for allow in ([], {allow!r}):
    try:
        r = run_program("import os; print(sum(n.isdigit() for n in os.listdir('/proc')))", 10, 512,
                        python=sys.executable, allow=allow)
        out[",".join(allow) or "-"] = {{"status": r.status, "stdout": r.stdout, "notes": r.notes,
                                        "isolation": r.isolation}}
    except SafeevalError as exc:
        out[",".join(allow) or "-"] = {{"error": str(exc)}}
print(json.dumps(out))
"""


def _needs(*tools: str) -> None:
    require(os.geteuid() == 0, "needs root, to build the restricted namespaces these tests run in")
    for tool in tools:
        require(shutil.which(tool) or os.path.exists(tool), f"needs {tool}")


def _run(prefix: list[str], python: str, allow: list[str]) -> dict:
    script = PROBE.format(repo=str(REPO), allow=allow)
    done = subprocess.run(
        [*prefix, python, "-I", "-c", script],
        capture_output=True,
        text=True,
        timeout=180,
        env={"PATH": "/usr/bin:/bin"},
        cwd="/",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _one_sentence(message: str, *words: str) -> None:
    assert message.startswith("The code sandbox cannot start") and message.endswith(".") and "\n" not in message
    for word in words:
        assert word in message, (word, message)


@pytest.mark.parametrize("who", ["root", "nobody"])
def test_without_a_network_namespace_the_sandbox_refuses_unless_allowed(who):
    _needs("setpriv", SYSTEM_PYTHON)
    probe = subprocess.run([sys.executable, "-c", NO_NETNS, "sh", "-c", "unshare -n true"], capture_output=True)
    require(probe.returncode != 0, "could not forbid network namespaces in a user namespace here")
    prefix = [sys.executable, "-c", NO_NETNS] + (NOBODY if who == "nobody" else [])
    out = _run(prefix, SYSTEM_PYTHON, ["network"])
    _one_sentence(
        out["-"]["error"],
        "a network namespace of its own",
        "--sandbox-allow network",
        "No space left on device",
        "root mode" if who == "root" else "userns mode",
    )
    allowed = out["network"]
    assert allowed["status"] == "passed"
    assert allowed["notes"] == ["without network isolation (allowed): No space left on device"]
    assert allowed["stdout"] == "2\n"  # its own /proc: PID 1 and the program
    iso = allowed["isolation"]
    assert iso["network"] == "HOST NETWORK (allowed)" and iso["lost"] == {"network": "No space left on device"}
    assert iso["allowed"] == ["network"] and "network" not in iso["namespaces"] and iso["proc"] == "its own"
    assert iso["mode"] == ("root" if who == "root" else "userns")


def test_without_its_own_proc_the_sandbox_refuses_unless_allowed():
    _needs("setpriv", "unshare", "mount", SYSTEM_PYTHON)
    mask = 'mount -t tmpfs -o size=1k tmpfs /proc/sys/fs && exec "$@"'  # containers mask /proc like this
    prefix = ["unshare", "-m", "--propagation", "private", "sh", "-c", mask, "sh", *NOBODY]
    out = _run(prefix, SYSTEM_PYTHON, ["proc"])
    _one_sentence(out["-"]["error"], "a /proc of its own", "--sandbox-allow proc", "Operation not permitted")
    allowed = out["proc"]
    assert allowed["status"] == "passed" and int(allowed["stdout"]) > 2  # the host's processes are visible
    assert allowed["isolation"]["proc"] == "the host's, read-only (allowed)"
    assert allowed["isolation"]["network"] == "none"
    assert allowed["isolation"]["lost"] == {"proc": "Operation not permitted"}


def test_root_without_an_unprivileged_uid_to_switch_to_refuses():
    """Root of a user namespace that maps only uid 0 (`unshare -r`) has no uid to run programs as."""
    _needs("unshare", SYSTEM_PYTHON)
    out = _run(["unshare", "-U", "-r"], SYSTEM_PYTHON, [])
    _one_sentence(out["-"]["error"], "an unprivileged user", "no uid besides root is mapped", "map a uid range")


def test_the_cli_refuses_before_any_model_is_loaded_and_records_an_allowed_loss(tiny_model, data_dir, tmp_path):
    """`safeeval score --tasks humaneval` where the system gives no network namespace: exit 2 with one sentence;
    with --sandbox-allow network it runs, and results.json says what the programs lacked."""
    _needs()
    probe = subprocess.run([sys.executable, "-c", NO_NETNS, "sh", "-c", "unshare -n true"], capture_output=True)
    require(probe.returncode != 0, "could not forbid network namespaces in a user namespace here")
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "300"}
    base = [
        sys.executable,
        "-c",
        NO_NETNS,
        sys.executable,
        "-m",
        "safeeval",
        "score",
        "--model",
        str(tiny_model),
        "--tasks",
        "humaneval",
        "--limit",
        "2",
        "--max-new-tokens",
        "8",
        "--data-dir",
        str(data_dir),
        "--store",
        str(tmp_path / "store.sqlite"),
    ]
    refused = subprocess.run(
        [*base, "--out", str(tmp_path / "refused")], capture_output=True, text=True, env=env, timeout=600
    )
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "Traceback" not in refused.stderr
    assert "network namespace" in refused.stderr and "--sandbox-allow" in refused.stderr
    assert not (tmp_path / "refused").exists()
    ran = subprocess.run(
        [*base, "--out", str(tmp_path / "run"), "--sandbox-allow", "network"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    scorer = results["scorers"]["humaneval"]
    assert scorer["isolation"]["lost"] == {"network": "No space left on device"}
    assert scorer["options"]["sandbox_allow"] == ["network"]


def test_the_summary_counts_programs_that_ran_without_a_protection():
    from safeeval.data import Sample

    scorer = HumanEvalScorer("humaneval", {})
    samples = [Sample("t", str(i), "p", meta={"task_id": f"T/{i}"}) for i in range(3)]
    notes = [["without network isolation (allowed): No space left on device"], [], None]
    verdicts = [
        {"status": "ok", "score": 1.0, "extra": {"status": "passed", **({"notes": n} if n is not None else {})}}
        for n in notes
    ]
    assert scorer.summarize(samples, verdicts, 0)["isolation_lost"] == {"network": 1}
    assert "isolation_lost" not in scorer.summarize(samples[1:], verdicts[1:], 0)


def test_full_isolation_is_recorded_and_the_opt_in_is_part_of_the_fingerprint():
    scorer = HumanEvalScorer("humaneval", {"timeout_s": 5})
    iso = scorer.info["isolation"]
    assert iso["lost"] == {} and iso["allowed"] == [] and iso["network"] == "none" and iso["proc"] == "its own"
    assert {"mount", "pid", "ipc", "uts", "network"} <= set(iso["namespaces"])
    assert iso["limits"]["timeout_s"] == 5 and iso["limits"]["memory_mb"] == 2048
    opted = HumanEvalScorer("humaneval", {"timeout_s": 5, "sandbox_allow": ["network"]})
    assert opted.fingerprint != scorer.fingerprint  # verdicts made with less isolation never mix with others
    assert opted.info["isolation"]["allowed"] == ["network"]
    assert opted.info["isolation"]["lost"] == {}  # allowed, yet not needed here


@pytest.mark.parametrize("allow", [["mount"], ["network", "pid"], ["everything"]])
def test_only_network_and_proc_may_be_given_up(allow):
    with pytest.raises(SafeevalError, match="only network and proc may be given up"):
        run_program("print(1)", 5, 512, allow=allow)
    with pytest.raises(SafeevalError, match="only network and proc may be given up"):
        HumanEvalScorer("humaneval", {"sandbox_allow": allow})


def test_processes_that_outlive_the_kill_sweep_stop_the_run_and_keep_their_uid(monkeypatch):
    """A process that survives SIGKILL (uninterruptible sleep) cannot be made on purpose: the sweep's answer is
    faked, the rest is real."""
    monkeypatch.setattr(sandbox, "_sweep", lambda find, deadline_s=10.0: False)
    with pytest.raises(SafeevalError, match="outlived SIGKILL"):
        run_program("while True:\n    pass\n", 1, 512)
    if os.geteuid() == 0:
        assert sandbox._uids_busy  # that uid is never handed to another run by this process


def test_the_launcher_is_valid_python():
    """The launcher is source in a string: no linter or formatter parses it, and a line wrapped for length once
    turned it into a SyntaxError that refused every run. Compile it here, where no namespace is needed."""
    compile(sandbox._LAUNCHER, "launcher", "exec")


def test_every_protection_the_launcher_sets_up_is_checked_or_refused():
    """The class of bug: a set-up call whose failure is ignored, or a fallback that drops a protection. Every
    libc call in the launcher checks its result, a failure names a known protection, and the only protections
    that may be lost are the allowable ones, each behind the user's opt-in."""
    launcher = sandbox._LAUNCHER
    for line in launcher.splitlines():
        if "libc." in line and not line.lstrip().startswith(("libc.syscall.restype", "rc = libc.syscall(")):
            assert re.search(r"^\s*(if|elif|while|rc, err =|return|fd, err =)\b|!= 0", line), line
    assert "warn" not in launcher
    for prot in re.findall(r'P = "([\w-]+)"', launcher) + re.findall(r'fail\([^\n]*, "([\w-]+)"\)\n', launcher):
        assert prot in PROTECTIONS or prot == "setup", prot
    lost = re.findall(r'lost\("([\w-]+)"', launcher)
    assert sorted(set(lost)) == sorted(ALLOWABLE)
    for prot in lost:
        assert f'"{prot}" in ALLOW' in launcher or f'"{prot}" not in ALLOW' in launcher
