"""The path of one scoring run: specs -> samples -> generations -> verdicts -> metrics -> results."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from . import __version__, data, metrics, registry, results
from .backends import Backend, GenParams, make_backend
from .errors import SafeevalError
from .judging import Judge, Verdict, make_judge
from .models import home
from .store import Store, key

# A reporter draws progress: stage(description, total) yields a function that advances it by n.
Reporter = Callable[[str, int], contextlib.AbstractContextManager]


@contextlib.contextmanager
def _silent(description: str, total: int) -> Iterator[Callable[[int], None]]:
    yield lambda n: None


@dataclass
class ScoreConfig:
    model: str
    tasks: list[str]
    judges: list[str] = field(default_factory=lambda: ["keyword"])
    backend: str = "hf"
    limit: int | None = None
    seed: int = 0
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    system_prompt: str | None = None
    out: Path | None = None
    store: Path | None = None
    data_dir: Path | None = None
    tasks_dirs: list[Path] = field(default_factory=list)
    judges_dirs: list[Path] = field(default_factory=list)
    backend_options: dict = field(default_factory=dict)  # adapter, dtype, batch_size, base_url, ...
    judge_batch: int = 512
    command: list[str] = field(default_factory=list)  # as typed, for the record; keys never travel in argv

    def params(self) -> GenParams:
        return GenParams(self.max_new_tokens, self.temperature, self.top_p, self.seed)


@dataclass
class Prepared:
    """Everything a run needs before it touches a model, so bad input fails in seconds."""

    tasks: list[tuple[str, data.Loaded, registry.Spec]]
    judges: list[Judge]


def prepare(cfg: ScoreConfig) -> Prepared:
    if not cfg.tasks:
        raise SafeevalError("No tasks given; list them with `safeeval tasks`.")
    if not cfg.judges:
        raise SafeevalError("No judges given; list them with `safeeval judges`.")
    # Each name once: a task or judge listed twice would be scored twice under one label.
    task_specs = registry.pick(registry.load_tasks(cfg.tasks_dirs), list(dict.fromkeys(cfg.tasks)), "task")
    judge_specs = registry.pick(registry.load_judges(cfg.judges_dirs), list(dict.fromkeys(cfg.judges)), "judge")
    judges = [make_judge(spec, variant, cfg.judges_dirs) for spec, variant in judge_specs]
    root = data.data_dir(cfg.data_dir)
    loaded = []
    for spec, split in task_specs:
        got = data.load(spec, split, root)
        got.samples = data.subsample(got.samples, cfg.limit, cfg.seed)
        label = spec.name if got.split is None else f"{spec.name}:{got.split}"
        if label not in {lab for lab, _, _ in loaded}:  # 'harmbench' and 'harmbench:test' are one task
            loaded.append((label, got, spec))
    return Prepared(loaded, judges)


def score(cfg: ScoreConfig, reporter: Reporter = _silent, backend: Backend | None = None) -> dict:
    """Run (or resume) a scoring run and write results.json and samples.jsonl; returns the results."""
    started = datetime.now(timezone.utc)
    prep = prepare(cfg)
    store = Store(cfg.store or home() / "store.sqlite")
    own_backend = backend is None
    backend = backend or make_backend(cfg.backend, cfg.model, **cfg.backend_options)
    try:
        params = cfg.params()
        items = [(label, spec, s) for label, got, spec in prep.tasks for s in got.samples]
        chats = [_chat(s, cfg.system_prompt) for _, _, s in items]
        rendered = [backend.render(c) for c in chats]
        gen_keys = [key("generation", backend.name, backend.fingerprint, params.as_dict(), r) for r in rendered]
        generated_now = _generate(backend, store, params, chats, rendered, gen_keys, reporter)
        generations = store.get_generations(gen_keys)
        responses = [generations[k]["response"] for k in gen_keys]
        verdicts, judged_now = {}, 0
        for judge in prep.judges:
            verdicts[judge.name], n = _judge(judge, store, [s for _, _, s in items], responses, gen_keys,
                                             reporter, cfg.judge_batch)
            judged_now += n
    finally:
        if own_backend:
            backend.close()
        store.close()

    out = cfg.out or Path("safeeval-runs") / f"{_slug(cfg.model)}-{started.strftime('%Y%m%d-%H%M%S')}"
    summary = {
        "schema_version": results.SCHEMA_VERSION,
        "safeeval_version": __version__,
        "started_at": started.isoformat(),
        "finished_at": datetime.now(timezone.utc).isoformat(),
        "model": {**backend.info, "backend": backend.name},
        "generation": {**params.as_dict(), "system_prompt": cfg.system_prompt},
        "command": cfg.command,
        "seed": cfg.seed,
        "limit": cfg.limit,
        "tasks": {label: {"spec": spec.name, "spec_hash": spec.hash, "split": got.split, "source": got.source,
                          "n_samples": len(got.samples), "sample_ids_hash": key([s.id for s in got.samples])[:16]}
                  for label, got, spec in prep.tasks},
        "judges": {j.name: j.info for j in prep.judges},
        "metrics": _metrics(prep, items, verdicts, cfg.seed),
        "counts": {"samples": len(items), "unique_prompts": len(set(gen_keys)), "generated_now": generated_now,
                   "judged_now": judged_now, "truncated": sum(generations[k]["finish_reason"] == "length" for k in gen_keys)},
        "store": str(store.path),
        "versions": results.versions(),
    }
    rows = [
        {"task": label, "id": s.id, "category": s.category, "harmful": s.harmful, "meta": s.meta,
         "messages": chats[i], "generation_key": gen_keys[i], "response": responses[i],
         "finish_reason": generations[gen_keys[i]]["finish_reason"], "n_tokens": generations[gen_keys[i]]["n_tokens"],
         "verdicts": {j.name: verdicts[j.name][i] for j in prep.judges}}
        for i, (label, _, s) in enumerate(items)
    ]
    results.write(Path(out), summary, rows)
    summary["out"] = str(out)
    return summary


def _metrics(prep: Prepared, items: list, verdicts: dict[str, list[dict]], seed: int) -> dict:
    """Per task and judge: ASR, benign refusal, and breakdowns by category and the spec's extra fields."""
    block = {}
    for label, _, spec in prep.tasks:
        idx = [i for i, (lab, _, _) in enumerate(items) if lab == label]
        samples = [items[i][2] for i in idx]
        groups = {"category": [s.category for s in samples]} if any(s.category for s in samples) else {}
        for field_name in spec.breakdowns or []:
            groups[field_name] = [s.meta.get(field_name) for s in samples]
        block[label] = {
            judge.name: metrics.verdict_summary([verdicts[judge.name][i] for i in idx], [s.harmful for s in samples],
                                                groups, seed)
            for judge in prep.judges
        }
    return block


def _chat(sample: data.Sample, system_prompt: str | None) -> list[dict]:
    chat = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return chat + [{"role": "user", "content": sample.prompt}]


def _missing(keys: list[str], have: dict) -> list[int]:
    """Positions of the keys the store lacks, each key once (the same prompt may recur across tasks)."""
    first = {}
    for i, k in enumerate(keys):
        if k not in have:
            first.setdefault(k, i)
    return list(first.values())


def _generate(backend, store, params, chats, rendered, gen_keys, reporter) -> int:
    """Generate what the store lacks, committing each finished group so an interruption loses little."""
    pending = _missing(gen_keys, store.get_generations(gen_keys))
    if not pending:
        return 0
    done = 0
    with reporter("generating", len(pending)) as advance:
        for group in backend.generate([chats[i] for i in pending], params):
            rows = []
            for c in group:
                i = pending[c.index]
                rows.append({"key": gen_keys[i], "model": backend.fingerprint, "backend": backend.name,
                             "params": params.as_dict(), "prompt": rendered[i], "response": c.text,
                             "finish_reason": c.finish_reason, "n_tokens": c.n_tokens})
            store.put_generations(rows)
            done += len(rows)
            advance(len(rows))
    return done


def _judge(judge, store, samples, responses, gen_keys, reporter, batch) -> tuple[list[dict], int]:
    """Judge what the store lacks; a sample that needs another judge is recorded as not judged."""
    j_keys = [key("judgment", judge.fingerprint, g) for g in gen_keys]
    pending = _missing(j_keys, store.get_judgments(j_keys))
    with reporter(f"judging ({judge.name})", len(pending)) as advance:
        for start in range(0, len(pending), batch):
            chunk = pending[start:start + batch]
            todo = [i for i in chunk if not (samples[i].needs_judge and samples[i].needs_judge != judge.kind)]
            found = dict(zip(todo, judge.judge([samples[i] for i in todo], [responses[i] for i in todo]))) if todo else {}
            rows = []
            for i in chunk:
                verdict = found.get(i) or Verdict(None, status="not_judged",
                                                   note=f"needs the {samples[i].needs_judge} judge")
                rows.append({"key": j_keys[i], "judge": judge.fingerprint, "generation": gen_keys[i],
                             "verdict": verdict.as_dict()})
            store.put_judgments(rows)
            advance(len(chunk))
    got = store.get_judgments(j_keys)
    return [got[k] for k in j_keys], len(pending)


def _slug(model: str) -> str:
    name = Path(model).name or model
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in name)[:60]
