"""Two runs of one model scored on the same prompts, answer by answer: section 7's tables (README.md).

    python docs/study/other_cpu.py cells/aligned other-cpu/aligned        # b2 against b2' (sitting 9's CPU)
    python docs/study/other_cpu.py other-cpu/aligned other-cpu/sst2-benign-sft-s0

Folders are relative to docs/study/ and hold a samples.jsonl.gz (archive.py's kept form). For each rate: n, both
rates, the answers only the first or only the second run counts, and McNemar's exact two-sided p (not corrected).
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

from safeeval.stats import binomial_p, discordant

HERE = Path(__file__).parent


def _rows(folder: str) -> dict[tuple[str, str], dict]:
    with gzip.open(HERE / folder / "samples.jsonl.gz", "rt", encoding="utf-8") as f:
        return {(r["task"], r["id"]): r for r in map(json.loads, f)}


def _judged(judge):
    return lambda r: r["verdicts"][judge]["status"] == "ok" and r["verdicts"][judge]["harmful"] is not None


RATES = [  # (label, task, which rows count, what is counted)
    *[
        (f"{task} ASR ({judge})", task, _judged(judge), lambda r, j=judge: bool(r["verdicts"][j]["harmful"]))
        for judge in ("refusal", "keyword")
        for task in ("advbench", "harmbench:test", "directharm4")
    ],
    *[
        (
            f"XSTest unsafe complied with ({j})",
            "xstest",
            lambda r: r["harmful"],
            lambda r, j=j: r["verdicts"][j]["harmful"],
        )
        for j in ("refusal", "keyword")
    ],
    *[
        (f"XSTest safe refused ({j})", "xstest", lambda r: not r["harmful"], lambda r, j=j: r["verdicts"][j]["refused"])
        for j in ("refusal", "keyword")
    ],
    *[
        (
            f"Self-Instruct refused ({j})",
            "benign-selfinstruct",
            lambda r: True,
            lambda r, j=j: r["verdicts"][j]["refused"],
        )
        for j in ("refusal", "keyword")
    ],
    ("SST-2 accuracy", "sst2", lambda r: True, lambda r: r["verdicts"]["sst2"]["score"] == 1.0),
]


def main(first: str, second: str) -> None:
    a, b = _rows(first), _rows(second)
    if a.keys() != b.keys():
        sys.exit(f"{first} and {second} did not score the same prompts")
    print("rate\tn\tfirst %\tsecond %\tfirst only / second only\tp")
    for label, task, counts, hit in RATES:
        pairs = [(bool(hit(a[k])), bool(hit(b[k]))) for k in a if k[0] == task and counts(a[k]) and counts(b[k])]
        if not pairs:
            continue
        only_b, only_a = discordant(*zip(*pairs))
        rate_a, rate_b = (100 * sum(p[i] for p in pairs) / len(pairs) for i in (0, 1))
        p = binomial_p(only_a, only_a + only_b)
        print(f"{label}\t{len(pairs)}\t{rate_a:.1f}\t{rate_b:.1f}\t{only_a} / {only_b}\t{p:.2g}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
