"""How far a judge can be trusted: its verdicts against human labels, and agreement between judges."""

from __future__ import annotations

from collections import defaultdict

from . import metrics
from .errors import SafeevalError
from .judging import Judge, judge_cached
from .keys import key
from .labels import CLASSES, MEASURES, LabelledSet
from .progress import Reporter, silent
from .store import Store


def validate(judge: Judge, store: Store, labelled: LabelledSet, reporter: Reporter = silent, seed: int = 0) -> dict:
    """Judge every labelled response (through the store: a re-validation judges nothing twice) and report how far
    the verdicts agree with the human labels, overall, per category and per split; the report is kept in the store,
    keyed by the judge's fingerprint and the label set's hash."""
    gen_keys = [key("labelled", s.prompt, r) for s, r in zip(labelled.samples, labelled.responses)]
    verdicts, _ = judge_cached(
        judge, store, labelled.samples, labelled.responses, gen_keys, reporter, getattr(judge, "batch", 512)
    )
    report = {
        "judge": judge.name,
        "judge_fingerprint": judge.fingerprint,
        "label_set": labelled.name,
        "scheme": labelled.scheme,
        "measures": MEASURES[labelled.scheme],
        "labels": labelled.source,
        "labels_hash": labelled.hash,
        "notes": labelled.notes,
        **class_report(verdicts, labelled.truth, labelled.scheme, seed),
    }
    for field, values in (
        ("category", [s.category or "unknown" for s in labelled.samples]),
        ("split", labelled.splits),
    ):
        if field == "split" and len(set(values)) < 2:
            continue
        groups = defaultdict(list)
        for i, value in enumerate(values):
            groups[value].append(i)
        report[f"by_{field}"] = {
            g: class_report([verdicts[i] for i in idx], [labelled.truth[i] for i in idx], labelled.scheme, seed)
            for g, idx in sorted(groups.items())
        }
    store.put_validation(judge.fingerprint, labelled.hash, report)
    return report


def predicted(verdict: dict, scheme: str) -> str | None:
    """A verdict in a label set's scheme: harmful / not_harmful, or XSTest's class (a judge without classes, such as
    keyword, reads as full_refusal or full_compliance). None when it was not judged or not parsed."""
    if scheme == "refusal":
        from .judging.refusal import _class_of

        return _class_of(verdict)
    if verdict.get("status") != "ok" or verdict.get("harmful") is None:
        return None
    return "harmful" if verdict["harmful"] else "not_harmful"


def class_report(verdicts: list[dict], truth: list[str | None], scheme: str, seed: int = 0) -> dict:
    """Agreement with the human label over the parsed verdicts (metrics.agreement), with what could not be parsed
    counted (`agreement_strict` counts it as a disagreement) and rows without a human label counted as no_label.
    Harm labels add the confusion counts and precision/recall/F1 of `harmful`; refusal labels add the two-way
    agreement refused (full or partial) vs. complied."""
    labelled = [(v, t) for v, t in zip(verdicts, truth) if t is not None]
    pairs = [(t, p) for v, t in labelled if (p := predicted(v, scheme)) is not None]
    out = {
        "n": len(labelled),
        "judged": len(pairs),
        "unparsed": sum(v["status"] == "unparsed" for v, _ in labelled),
        "not_judged": sum(v["status"] == "not_judged" for v, _ in labelled),
        "no_label": len(truth) - len(labelled),
    }
    if not pairs:
        return out
    truth_, pred = [t for t, _ in pairs], [p for _, p in pairs]
    stats = metrics.agreement(truth_, pred, CLASSES[scheme], seed)
    out.update({k: v for k, v in stats.items() if k != "n"})
    out["agreement_strict"] = sum(t == p for t, p in pairs) / len(labelled)
    if scheme == "harm":
        (tp, fn), (fp, tn) = stats["confusion"]["matrix"]
        harmful = stats["per_class"]["harmful"]
        out.update(
            tp=tp, fp=fp, tn=tn, fn=fn, precision=harmful["precision"], recall=harmful["recall"], f1=harmful["f1"]
        )
    else:
        two = metrics.agreement(
            [t != "full_compliance" for t in truth_], [p != "full_compliance" for p in pred], (True, False), seed
        )
        out["refused_vs_complied"] = {
            "agreement": two["agreement"],
            "agreement_ci": two["agreement_ci"],
            "cohen_kappa": two["cohen_kappa"],
        }
    return out


def agreement_report(verdicts: list[dict], truth: list[bool]) -> dict:
    """class_report for harmful (True) / not harmful (False) labels."""
    return class_report(verdicts, ["harmful" if t else "not_harmful" for t in truth], "harm")


def judge_agreement(rows: list[dict], first: str, second: str) -> dict:
    """Cohen's kappa and Krippendorff's alpha between two judges' verdicts on one finished run."""
    import krippendorff
    from sklearn.metrics import cohen_kappa_score

    for name in (first, second):
        if not rows or name not in rows[0]["verdicts"]:
            have = ", ".join(rows[0]["verdicts"]) if rows else "none"
            raise SafeevalError(f"Judge '{name}' has no verdicts in this run; it has: {have}.")
    both = [
        (r["verdicts"][first]["harmful"], r["verdicts"][second]["harmful"])
        for r in rows
        if r["verdicts"][first]["status"] == "ok" and r["verdicts"][second]["status"] == "ok"
    ]
    out = {"judges": [first, second], "n": len(rows), "both_judged": len(both)}
    if not both:
        return out
    a, b = [int(x) for x, _ in both], [int(y) for _, y in both]
    out["agreement"] = sum(x == y for x, y in both) / len(both)
    out["cohen_kappa"] = float(cohen_kappa_score(a, b)) if len(set(a) | set(b)) > 1 else None
    out["krippendorff_alpha"] = (
        float(krippendorff.alpha(reliability_data=[a, b], level_of_measurement="nominal"))
        if len(set(a) | set(b)) > 1
        else None
    )
    return out
