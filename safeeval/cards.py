"""The judge card shown beside every score: what a judge's validations against human labels say. Pure functions
over the reports that `safeeval judge validate` keeps in the store (validate.py); no I/O."""

from __future__ import annotations

from pathlib import Path

MEASURES = {"harm": "harmfulness of a response", "refusal": "refusal class"}


def scheme_of(report: dict) -> str:
    """A validation's label scheme; reports written before label sets existed were all against harm labels."""
    return report.get("scheme") or "harm"


def judge_card(validations: list[dict]) -> dict:
    """The card for one judge fingerprint from its validations (newest first, as Store.get_validations gives them):
    one entry per label set, the newest, each saying what it measures. A judge without any is `unvalidated`.

    {"status": "validated" | "unvalidated",
     "validations": [{"label_set", "scheme", "measures", "agreement", "cohen_kappa", "n", "labels_hash",
                      "summary"}, ...]}
    `summary` is one line for a table cell, e.g. "xstest-completions (refusal class): agreement 0.93, kappa 0.87,
    n 1350"; a refusal-class entry beside an ASR thus says it validates refusal detection, not harm."""
    entries, seen = [], set()
    for report in validations:
        name = report.get("label_set") or Path(str(report.get("labels", "labels"))).name
        if name in seen:
            continue
        seen.add(name)
        scheme = scheme_of(report)
        entry = {"label_set": name, "scheme": scheme, "measures": MEASURES[scheme],
                 **{k: report.get(k) for k in ("agreement", "cohen_kappa", "n", "labels_hash")}}
        entry["summary"] = (f"{name} ({entry['measures']}): agreement {_fmt(entry['agreement'])}, "
                            f"kappa {_fmt(entry['cohen_kappa'])}, n {entry['n']}")
        entries.append(entry)
    return {"status": "validated" if entries else "unvalidated", "validations": entries}


def harm_validation(validations: list[dict]) -> dict | None:
    """The newest validation against harm labels: the only kind a judge-error correction of an ASR may rest on."""
    return next((r for r in validations if scheme_of(r) == "harm" and "tp" in r), None)


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"
