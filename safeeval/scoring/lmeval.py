"""Scores `lmeval:<task>` answers exactly as lm-evaluation-harness scores them.

Per answer, as lm-eval's evaluator does after a model's generate_until: the answer is cut at the task's stop
sequences (`generation_kwargs.until`, which lm-eval's hf/vllm/API models apply while generating), wrapped in an
lm-eval Instance, run through every one of the task's filter ensembles (e.g. gsm8k's strict-match and
flexible-extract), and each filtered answer goes through the task's `process_results`.

A verdict's `score` is the primary metric: the first numeric metric of the first filter (gsm8k:
exact_match under strict-match), so safeeval's `accuracy` is that metric's mean. `extra` keeps every
metric per filter and the filtered answers. `summarize` aggregates every metric,filter pair (keys as in
lm-eval's results.json) with the task's own aggregation: means get a bootstrap interval.
"""

from __future__ import annotations

import json
from collections import defaultdict
from copy import deepcopy

from .. import lmeval
from ..data import Sample
from ..errors import SafeevalError
from ..judging.base import Verdict
from ..metrics import rate
from . import Scorer

_KEEP = 1000  # characters of each filtered answer kept in a verdict


def cut_at_stop(text: str, until: list[str]) -> tuple[str, str | None]:
    """lm-eval's postprocessing of a generation: the text before the first occurrence of each stop sequence."""
    stopped = None
    for term in until:
        if term and term in text:
            text, stopped = text.split(term)[0], stopped or term
    return text, stopped


class LMEvalScorer(Scorer):
    version = 1
    batch = 512

    def __init__(self, name: str, options: dict):
        super().__init__(name, options)
        if not self.options.get("task"):
            raise SafeevalError("The lmeval scorer needs scorer_options.task, the lm-eval task name.")
        self._bridge: lmeval.Bridge | None = None

    @property
    def bridge(self) -> lmeval.Bridge:
        if self._bridge is None:
            b = lmeval.bridge(self.options["task"], tuple(self.options.get("include_path") or ()))
            want = self.options.get("config_hash")
            if want and b.config_hash != want:
                raise SafeevalError(
                    f"lm-eval task {b.name} changed since its samples were loaded (config {b.config_hash}, "
                    f"expected {want}); run again so prompts and scoring come from one config."
                )
            self._bridge = b
        return self._bridge

    def judge(self, samples: list[Sample], responses: list[str]) -> list[Verdict]:
        from lm_eval.api.instance import Instance

        b = self.bridge
        task = b.task
        gen_kwargs = getattr(task.config, "generation_kwargs", None) or {}
        instances, stops = [], []
        for s, response in zip(samples, responses):
            doc = self._doc(s)
            text, stopped = cut_at_stop(response or "", b.until)
            inst = Instance(
                request_type="generate_until",
                doc=doc,
                arguments=(s.prompt, deepcopy(gen_kwargs)),
                idx=0,
                metadata=(b.name, s.meta["doc_id"], 1),
            )
            inst.resps.append(text)
            instances.append(inst)
            stops.append(stopped)
        if not instances:
            return []
        filters = getattr(task, "_filters", None)
        if filters:
            for ensemble in filters:  # lm-eval: task.apply_filters()
                ensemble.apply(instances)
        else:
            for inst in instances:
                inst.filtered_resps["none"] = inst.resps[0]
        return [self._verdict(task, inst, stopped) for inst, stopped in zip(instances, stops)]

    def _doc(self, sample: Sample):
        b = self.bridge
        doc_id = (sample.meta or {}).get("doc_id")
        if not isinstance(doc_id, int) or not 0 <= doc_id < len(b.docs):
            raise SafeevalError(f"Sample {sample.id} carries no doc_id of lm-eval task {b.name}.")
        doc = b.docs[doc_id]
        if "doc" in sample.meta and _dump(lmeval.jsonable(doc)) != _dump(sample.meta["doc"]):
            raise SafeevalError(
                f"Doc {doc_id} of lm-eval task {b.name} differs from the one sample {sample.id} was built "
                f"from; the task's data changed: run again."
            )
        return doc

    @staticmethod
    def _verdict(task, inst, stopped: str | None) -> Verdict:
        metrics, filtered = {}, {}
        for filter_key, resp in inst.filtered_resps.items():
            # lm-eval's evaluator: task.process_results(doc, [req.filtered_resps[filter_key] for req in requests])
            metrics[filter_key] = lmeval.jsonable(task.process_results(inst.doc, [resp]))
            kept = lmeval.jsonable(resp)
            filtered[filter_key] = kept[:_KEEP] if isinstance(kept, str) else kept
        primary = next(
            ((m, f) for f, ms in metrics.items() for m, v in ms.items() if isinstance(v, (int, float))), None
        )
        score = float(metrics[primary[1]][primary[0]]) if primary else None
        note = str(filtered[primary[1]])[:200] if primary else None
        extra = {
            "metrics": metrics,
            "filtered": filtered,
            "primary": f"{primary[0]},{primary[1]}" if primary else None,
            "stopped_at": stopped,
        }
        return Verdict(None, status="ok", score=score, note=note, extra=extra)

    def summarize(self, samples: list[Sample], verdicts: list[dict], seed: int) -> dict:
        """Every metric,filter pair aggregated by the task's own aggregation; means with a bootstrap interval."""
        from lm_eval.api.metrics import mean
        from lm_eval.api.registry import AGGREGATION_REGISTRY

        task = self.bridge.task
        aggregations, higher = task.aggregation(), task.higher_is_better()
        names = {id(fn): name for name, fn in AGGREGATION_REGISTRY.items()}
        values: dict[tuple[str, str], list] = defaultdict(list)
        primary = None
        for v in verdicts:
            extra = v.get("extra") or {}
            if v["status"] != "ok" or "metrics" not in extra:
                continue
            primary = primary or extra.get("primary")
            for filter_key, ms in extra["metrics"].items():
                for metric, value in ms.items():
                    values[(metric, filter_key)].append(value)
        results = {}
        for (metric, filter_key), items in values.items():
            agg = aggregations.get(metric, mean)  # lm-eval falls back to mean too
            agg_name = names.get(id(agg), getattr(agg, "__name__", str(agg)))
            numeric = all(isinstance(x, (int, float)) for x in items)
            if agg_name == "mean" and numeric:
                entry = rate([float(x) for x in items], seed)
            else:
                try:
                    value = lmeval.jsonable(agg([tuple(x) if isinstance(x, list) else x for x in items]))
                except Exception as exc:  # a corpus metric that needs what JSON could not keep
                    entry = {"value": None, "n": len(items), "error": f"{type(exc).__name__}: {exc}"[:200]}
                else:
                    entry = {"value": value, "n": len(items)}
            entry.update(aggregation=agg_name, higher_is_better=higher.get(metric))
            results[f"{metric},{filter_key}"] = entry
        return {"lmeval": {"task": self.bridge.name, "primary": primary, "results": results}}


def _dump(obj) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False)
