"""How far a judge can be trusted: its verdicts against human labels, and agreement between judges."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path

from . import data, registry
from .errors import SafeevalError
from .progress import Reporter, silent
from .judging import Judge, judge_cached
from .keys import key
from .store import Store

DEFAULT_LABELS = "harmbench/text_behaviors_val_set.json"  # HarmBench's classifier validation set


def load_labelled(labels: Path | None, data_root: Path | None) -> tuple[list[data.Sample], list[str], list[bool], str]:
    """Samples, responses and majority human labels from a file shaped like HarmBench's validation set:
    {behavior_id: [{"test_case", "generation", "human_0", "human_1", ...}, ...]}."""
    path = Path(labels) if labels else (data_root / DEFAULT_LABELS if data_root else None)
    if path is None or not path.exists():
        where = path or f"<data-dir>/{DEFAULT_LABELS}"
        raise SafeevalError(f"No labelled set at {where}: pass --labels FILE or --data-dir holding {DEFAULT_LABELS}.")
    table = data.read_json(path, "Labelled set")
    shape = "an object of behavior ids, each holding a list of labelled generations, as HarmBench's val set"
    if not isinstance(table, dict):
        raise SafeevalError(f"Labelled set {path} is {data.json_kind(table)}; it must be {shape}.")
    behaviors = _harmbench_behaviors(data_root)
    samples, responses, truth = [], [], []
    for behavior_id, rows in table.items():
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise SafeevalError(f"Labelled set {path}: '{behavior_id}' holds {data.json_kind(rows)} that is not "
                                f"a list of objects; the file must be {shape}.")
        for n, row in enumerate(rows):
            humans = [k for k in row if k.startswith("human_")]
            if not humans or "generation" not in row:
                raise SafeevalError(f"{path}: {behavior_id} row {n} needs 'generation' and human_* labels.")
            if any(str(row[k]).strip() not in ("0", "1") for k in humans) or not isinstance(row["generation"], str):
                raise SafeevalError(f"{path}: {behavior_id} row {n} needs a text 'generation' and human_* labels of 0 "
                                    f"or 1 (found {', '.join(f'{k}={row[k]!r}' for k in humans)[:200]}).")
            votes = [int(str(row[k]).strip()) for k in humans]
            known = behaviors.get(behavior_id)
            meta = dict(known.meta) if known else {"behavior": row.get("behavior", row.get("test_case", "")), "context": ""}
            meta["source_labels"] = {k: row[k] for k in row if k not in ("test_case", "generation")}
            samples.append(data.Sample("labels", f"{behavior_id}#{n}", row.get("test_case") or meta["behavior"],
                                       known.category if known else None, True, meta))
            responses.append(row["generation"])
            truth.append(sum(votes) * 2 > len(votes))  # the majority label; ties count as not harmful
    return samples, responses, truth, str(path)


def _harmbench_behaviors(data_root: Path | None) -> dict[str, data.Sample]:
    """Behavior text, context and categories by BehaviorID, where a HarmBench copy is at hand."""
    try:
        spec = registry.load_tasks()["harmbench"]
        return {s.id: s for s in data.load(spec, "all", data_root).samples}
    except SafeevalError:
        return {}


def validate(judge: Judge, store: Store, labels: Path | None, data_root: Path | None,
             reporter: Reporter = silent) -> dict:
    samples, responses, truth, source = load_labelled(labels, data_root)
    labels_hash = hashlib.sha256(Path(source).read_bytes()).hexdigest()[:16]
    gen_keys = [key("labelled", s.prompt, r) for s, r in zip(samples, responses)]
    verdicts, _ = judge_cached(judge, store, samples, responses, gen_keys, reporter, getattr(judge, "batch", 512))
    report = {"judge": judge.name, "judge_fingerprint": judge.fingerprint, "labels": source, "labels_hash": labels_hash,
              **agreement_report(verdicts, truth)}
    by = defaultdict(list)
    for i, s in enumerate(samples):
        by[s.category or "unknown"].append(i)
    report["by_category"] = {c: agreement_report([verdicts[i] for i in idx], [truth[i] for i in idx])
                             for c, idx in sorted(by.items())}
    store.put_validation(judge.fingerprint, labels_hash, report)
    return report


def agreement_report(verdicts: list[dict], truth: list[bool]) -> dict:
    """Agreement with the majority label over the parsed verdicts; what could not be parsed is counted,
    and `agreement_strict` counts it as a disagreement."""
    from sklearn.metrics import cohen_kappa_score, confusion_matrix, precision_recall_fscore_support

    pairs = [(t, v["harmful"]) for v, t in zip(verdicts, truth) if v["status"] == "ok"]
    out = {"n": len(truth), "judged": len(pairs), "unparsed": sum(v["status"] == "unparsed" for v in verdicts),
           "not_judged": sum(v["status"] == "not_judged" for v in verdicts)}
    if not pairs:
        return out
    y_true, y_pred = [int(t) for t, _ in pairs], [int(p) for _, p in pairs]
    tn, fp, fn, tp = (int(x) for x in confusion_matrix(y_true, y_pred, labels=[0, 1]).ravel())
    precision, recall, f1, _ = precision_recall_fscore_support(y_true, y_pred, average="binary", zero_division=0)
    kappa = cohen_kappa_score(y_true, y_pred) if len(set(y_true) | set(y_pred)) > 1 else None
    out.update(tp=tp, fp=fp, tn=tn, fn=fn, agreement=(tp + tn) / len(pairs), agreement_strict=(tp + tn) / len(truth),
               cohen_kappa=None if kappa is None else float(kappa), precision=float(precision), recall=float(recall),
               f1=float(f1))
    return out


def judge_agreement(rows: list[dict], first: str, second: str) -> dict:
    """Cohen's kappa and Krippendorff's alpha between two judges' verdicts on one finished run."""
    import krippendorff
    from sklearn.metrics import cohen_kappa_score

    for name in (first, second):
        if not rows or name not in rows[0]["verdicts"]:
            have = ", ".join(rows[0]["verdicts"]) if rows else "none"
            raise SafeevalError(f"Judge '{name}' has no verdicts in this run; it has: {have}.")
    both = [(r["verdicts"][first]["harmful"], r["verdicts"][second]["harmful"]) for r in rows
            if r["verdicts"][first]["status"] == "ok" and r["verdicts"][second]["status"] == "ok"]
    out = {"judges": [first, second], "n": len(rows), "both_judged": len(both)}
    if not both:
        return out
    a, b = [int(x) for x, _ in both], [int(y) for _, y in both]
    out["agreement"] = sum(x == y for x, y in both) / len(both)
    out["cohen_kappa"] = float(cohen_kappa_score(a, b)) if len(set(a) | set(b)) > 1 else None
    out["krippendorff_alpha"] = (float(krippendorff.alpha(reliability_data=[a, b], level_of_measurement="nominal"))
                                 if len(set(a) | set(b)) > 1 else None)
    return out
