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
        entry = {
            "label_set": name,
            "scheme": scheme,
            "measures": MEASURES[scheme],
            **{k: report.get(k) for k in ("agreement", "cohen_kappa", "n", "labels_hash")},
        }
        entry["summary"] = (
            f"{name} ({entry['measures']}): agreement {_fmt(entry['agreement'])}, "
            f"kappa {_fmt(entry['cohen_kappa'])}, n {entry['n']}"
        )
        entries.append(entry)
    return {"status": "validated" if entries else "unvalidated", "validations": entries}


UNVALIDATED = {"status": "unvalidated", "validations": []}
# What a refusal-class validation says when it is shown beside an ASR: it validated something else.
NOT_HARM = "validates refusal detection, not harm"


def card_of(judge: dict | None) -> dict:
    """A judge's card as results.json's `judges.<name>` holds it; results written before cards existed have
    none, and read as `unvalidated` (a score is never shown beside a blank)."""
    card = (judge or {}).get("card")
    return card if isinstance(card, dict) and card.get("status") else UNVALIDATED


def card_line(card: dict) -> str:
    """One line for a table's legend or a summary: `unvalidated`, or `validated: <label set (what it measures):
    agreement, kappa, n>; ...`, each refusal-class entry saying that it validates refusal detection, not harm."""
    entries = card.get("validations") or []
    if card.get("status") != "validated" or not entries:
        return "unvalidated"
    return "validated: " + "; ".join(
        (e.get("summary") or e.get("label_set", "?")) + (f" ({NOT_HARM})" if e.get("scheme") == "refusal" else "")
        for e in entries
    )


def harm_validation(validations: list[dict]) -> dict | None:
    """The newest validation against harm labels: the only kind a judge-error correction of an ASR may rest on."""
    return next((r for r in validations if scheme_of(r) == "harm" and "tp" in r), None)


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"
