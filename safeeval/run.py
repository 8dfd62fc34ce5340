"""The path of one scoring run: specs -> samples -> generations -> verdicts -> metrics -> results."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from . import __version__, data, degeneration, lmeval, metrics, registry, results
from .backends import Backend, GenParams, make_backend
from .errors import SafeevalError
from .judging import Judge, JudgeRuntime, judge_cached, make_judge
from .generation import Reporter, generate_cached, silent
from .models import home
from .scoring import make_scorer
from .store import Store, key

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
    judge_backend: str | None = None  # for model judges; default: each judge spec's own
    judge_models: dict[str, str] = field(default_factory=dict)  # judge name -> model
    judge_options: dict = field(default_factory=dict)  # backend options for model judges
    perplexity_model: str | None = None  # a reference LM for the optional perplexity degeneration signal
    command: list[str] = field(default_factory=list)  # as typed, for the record; keys never travel in argv
    training: dict | None = None  # train-and-score: how the scored model was made (method, scenario, seed, ...)

    def params(self) -> GenParams:
        return GenParams(self.max_new_tokens, self.temperature, self.top_p, self.seed)


@dataclass
class Prepared:
    """Everything a run needs before it touches a model, so bad input fails in seconds."""

    tasks: list[tuple[str, data.Loaded, registry.Spec]]
    judges: list[tuple[registry.Spec, str | None]]  # built once the store is open: model judges cache in it
    suites: dict[str, dict] = field(default_factory=dict)  # name -> {tasks, metric, unavailable}


def prepare(cfg: ScoreConfig) -> Prepared:
    if not cfg.tasks:
        raise SafeevalError("No tasks given; list them with `safeeval tasks`.")
    if not cfg.judges:
        raise SafeevalError("No judges given; list them with `safeeval judges`.")
    # Each name once: a task or judge listed twice would be scored twice under one label.
    names, suites = _expand_suites(cfg.tasks, cfg.tasks_dirs)
    native = [n for n in names if not lmeval.is_lmeval(n)]  # lmeval:<task> is any lm-eval generative task
    picked = dict(zip(native, registry.pick(registry.load_tasks(cfg.tasks_dirs), native, "task")))
    judge_specs = registry.pick(registry.load_judges(cfg.judges_dirs), list(dict.fromkeys(cfg.judges)), "judge")
    root = data.data_dir(cfg.data_dir)
    loaded = []
    for name in names:
        try:
            if lmeval.is_lmeval(name):
                spec, got = lmeval.load_lmeval_task(name, root)
            else:
                spec, split = picked[name]
                got = data.load(spec, split, root)
        except SafeevalError as exc:
            # A suite member without data is skipped and flagged in the suite's result; a task asked for
            # by name is an error.
            owners = [s for s in suites.values() if name in s["tasks"]]
            if not owners or name in cfg.tasks:
                raise
            for suite in owners:
                suite["unavailable"][name] = str(exc)
            continue
        got.samples = data.subsample(got.samples, cfg.limit, cfg.seed)
        label = spec.name if got.split is None else f"{spec.name}:{got.split}"
        if label not in {lab for lab, _, _ in loaded}:  # 'harmbench' and 'harmbench:test' are one task
            loaded.append((label, got, spec))
    return Prepared(loaded, judge_specs, suites)


def score(cfg: ScoreConfig, reporter: Reporter = silent, backend: Backend | None = None) -> dict:
    """Run (or resume) a scoring run and write results.json and samples.jsonl; returns the results."""
    started = datetime.now(timezone.utc)
    prep = prepare(cfg)
    store = Store(cfg.store or home() / "store.sqlite")
    own_backend = backend is None
    runtime = JudgeRuntime(store=store, reporter=reporter, backend=cfg.judge_backend, models=cfg.judge_models,
                           options=cfg.judge_options, dirs=cfg.judges_dirs)
    judges: list[Judge] = []
    scorers = {label: make_scorer(spec) for label, _, spec in prep.tasks if spec.kind == "utility"}
    try:
        # Judges first: a judge model that cannot be found stops the run before any generation.
        if any(spec.kind != "utility" for _, _, spec in prep.tasks):
            for spec, variant in prep.judges:
                judges.append(make_judge(spec, variant, runtime))
        backend = backend or make_backend(cfg.backend, cfg.model, **cfg.backend_options)
        params = cfg.params()
        items = [(label, spec, s) for label, got, spec in prep.tasks for s in got.samples]
        chats = [_chat(s, cfg.system_prompt) for _, _, s in items]
        gen_keys, generations, generated_now = _generate(backend, store, items, chats, params, reporter)
        responses = [generations[k]["response"] for k in gen_keys]
        degen = [degeneration.signals(r, generations[k]["finish_reason"]) for r, k in zip(responses, gen_keys)]
        perplexity = _perplexity(cfg, responses, degen)
        # Judges read safety tasks' answers; each utility task's scorer reads its own. Verdicts by position.
        evaluators = [(judge, [i for i, (_, spec, _) in enumerate(items) if spec.kind != "utility"]) for judge in judges]
        evaluators += [(scorer, [i for i, (lab, _, _) in enumerate(items) if lab == label]) for label, scorer in scorers.items()]
        verdicts: dict[str, dict[int, dict]] = {}
        judged_now = 0
        for evaluator, idx in evaluators:
            found, n = judge_cached(evaluator, store, [items[i][2] for i in idx], [responses[i] for i in idx],
                                    [gen_keys[i] for i in idx], reporter, getattr(evaluator, "batch", cfg.judge_batch))
            verdicts.setdefault(evaluator.name, {}).update(zip(idx, found))
            judged_now += n
        validations = {j.name: store.get_validation(j.fingerprint) for j in judges}
    finally:
        for judge in [*judges, *scorers.values()]:
            getattr(judge, "close", lambda: None)()
        if own_backend and backend is not None:
            backend.close()
        store.close()

    metric_block = _metrics(prep, judges, scorers, items, verdicts, validations, degen, cfg.seed)
    out = cfg.out or Path("safeeval-runs") / f"{_slug(cfg.model)}-{started.strftime('%Y%m%d-%H%M%S')}"
    summary = {
        "schema_version": results.SCHEMA_VERSION,
        "safeeval_version": __version__,
        "started_at": started.isoformat(),
        "finished_at": datetime.now(timezone.utc).isoformat(),
        "model": {**backend.info, "backend": backend.name, "merged": getattr(backend, "merged", False)},
        "generation": {**params.as_dict(), "system_prompt": cfg.system_prompt,
                       **({"answer_tokens": raised} if (raised := _raised(prep, params)) else {})},
        "command": cfg.command,
        "training": cfg.training,
        "seed": cfg.seed,
        "limit": cfg.limit,
        "tasks": {label: {"spec": spec.name, "spec_hash": spec.hash, "split": got.split, "source": got.source,
                          "n_samples": len(got.samples), "sample_ids_hash": key([s.id for s in got.samples])[:16]}
                  for label, got, spec in prep.tasks},
        "judges": {j.name: {**j.info, "validation": _validation_brief(validations.get(j.name))} for j in judges},
        "scorers": {s.name: s.info for s in scorers.values()},
        "metrics": metric_block,
        "suites": _suite_results(prep, metric_block),
        "degeneration": {label: degeneration.summary([{"degeneration": degen[i]} for i, (lab, _, _) in enumerate(items)
                                                      if lab == label], cfg.seed) for label, _, _ in prep.tasks},
        "degeneration_perplexity": perplexity,
        "counts": {"samples": len(items), "unique_prompts": len(set(gen_keys)), "generated_now": generated_now,
                   "judged_now": judged_now, "truncated": sum(generations[k]["finish_reason"] == "length" for k in gen_keys)},
        "store": str(store.path),
        "versions": results.versions(),
    }
    rows = [
        {"task": label, "id": s.id, "category": s.category, "harmful": s.harmful, "meta": s.meta,
         "messages": chats[i], "generation_key": gen_keys[i], "response": responses[i],
         "finish_reason": generations[gen_keys[i]]["finish_reason"], "n_tokens": generations[gen_keys[i]]["n_tokens"],
         "degeneration": degen[i],
         "verdicts": {name: by_index[i] for name, by_index in verdicts.items() if i in by_index}}
        for i, (label, _, s) in enumerate(items)
    ]
    results.write(Path(out), summary, rows)
    summary["out"] = str(out)
    with contextlib.closing(Store(store.path)) as db:  # leaderboards can read every run from the store
        db.put_run(str(Path(out).resolve()), {k: v for k, v in summary.items() if k != "out"})
    return summary


def _task_params(spec: registry.Spec, params: GenParams) -> GenParams:
    """A task's answer_tokens is the room its answers need (worked maths, code): a run's smaller
    max_new_tokens is raised to it for that task's prompts, so a short safety run still scores it fairly."""
    need = int(spec.answer_tokens or 0)
    return replace(params, max_new_tokens=need) if need > params.max_new_tokens else params


def _raised(prep: Prepared, params: GenParams) -> dict[str, int]:
    return {label: p.max_new_tokens for label, _, spec in prep.tasks
            if (p := _task_params(spec, params)) is not params}


def _generate(backend: Backend, store: Store, items: list, chats: list, params: GenParams, reporter: Reporter):
    """generate_cached once per distinct setting (tasks with their own answer_tokens apart), in item order."""
    groups: dict[GenParams, list[int]] = {}
    for i, (_, spec, _) in enumerate(items):
        groups.setdefault(_task_params(spec, params), []).append(i)
    keys: list[str] = [""] * len(items)
    generations: dict[str, dict] = {}
    generated = 0
    for group_params, idx in groups.items():
        got_keys, got, n = generate_cached(backend, store, [chats[i] for i in idx], group_params, reporter)
        for i, k in zip(idx, got_keys):
            keys[i] = k
        generations.update(got)
        generated += n
    return keys, generations, generated


def _metrics(prep: Prepared, judges: list[Judge], scorers: dict, items: list, verdicts: dict[str, dict[int, dict]],
             validations: dict[str, dict | None], degen: list[dict], seed: int) -> dict:
    """Safety tasks: per judge, ASR, benign refusal and breakdowns. Utility tasks: accuracy and the scorer's own."""
    block = {}
    for label, _, spec in prep.tasks:
        idx = [i for i, (lab, _, _) in enumerate(items) if lab == label]
        samples = [items[i][2] for i in idx]
        if label in scorers:
            scorer = scorers[label]
            found = [verdicts[scorer.name][i] for i in idx]
            block[label] = {scorer.name: {**metrics.utility_summary(found, seed), **scorer.summarize(samples, found, seed)}}
            continue
        groups = {"category": [s.category for s in samples]} if any(s.category for s in samples) else {}
        for field_name in spec.breakdowns or []:
            groups[field_name] = [s.meta.get(field_name) for s in samples]
        block[label] = {
            judge.name: metrics.verdict_summary([verdicts[judge.name][i] for i in idx], [s.harmful for s in samples],
                                                groups, seed, validations.get(judge.name),
                                                [degen[i]["degenerate"] for i in idx])
            for judge in judges
        }
        if "type" in (spec.breakdowns or []):  # XSTest's own report: over-refusal and compliance per prompt type
            from .judging.refusal import xstest_summary

            for judge in judges:
                block[label][judge.name]["xstest"] = xstest_summary(
                    [verdicts[judge.name][i] for i in idx], [s.harmful for s in samples],
                    [s.meta.get("type") for s in samples], seed)
    return block


def _perplexity(cfg: ScoreConfig, responses: list[str], degen: list[dict]) -> dict | None:
    """The optional perplexity signal; a reference model that is missing is skipped, and the skip recorded."""
    if not cfg.perplexity_model:
        return None
    result = degeneration.perplexity(responses, cfg.perplexity_model)
    if result["status"] == "ok":
        for flags, high in zip(degen, result["high_perplexity"]):
            flags["high_perplexity"] = high
            flags["degenerate"] = flags["degenerate"] or high
    return {k: v for k, v in result.items() if k not in ("values", "high_perplexity")}


def _expand_suites(names: list[str], dirs: list[Path]) -> tuple[list[str], dict[str, dict]]:
    """'suite:NAME' stands for its tasks; each name once, in order."""
    wanted = [n for n in names if n.startswith("suite:")]
    if not wanted:
        return list(dict.fromkeys(names)), {}
    known = registry.load_suites(dirs)
    suites, expanded = {}, []
    for name in names:
        if not name.startswith("suite:"):
            expanded.append(name)
            continue
        suite = name.split(":", 1)[1]
        if suite not in known:
            raise SafeevalError(f"Unknown suite '{suite}'. Valid suites: {', '.join(sorted(known)) or 'none'}.")
        spec = known[suite]
        suites[suite] = {"tasks": list(spec.data["tasks"]), "metric": spec.data["metric"], "spec_hash": spec.hash,
                         "description": " ".join(str(spec.data.get("description", "")).split()), "unavailable": {}}
        expanded += spec.data["tasks"]
    return list(dict.fromkeys(expanded)), suites


def _suite_results(prep: Prepared, block: dict) -> dict:
    """Each suite's average per judge, over the benchmarks that ran; never silently over fewer."""
    out = {}
    for name, suite in prep.suites.items():
        labels = {label.split(":")[0]: label for label in block}
        per_judge: dict[str, dict] = {}
        for task in suite["tasks"]:
            for judge, m in block.get(labels.get(task, task), {}).items():
                value = (m.get(suite["metric"]) or {}).get("value")
                per_judge.setdefault(judge, {})[task] = value
        averages = {}
        for judge, values in per_judge.items():
            present = {t: v for t, v in values.items() if v is not None}
            missing = [t for t in suite["tasks"] if t not in present]
            averages[judge] = {"value": sum(present.values()) / len(present) if present else None,
                               "members": present, "missing": missing, "complete": not missing}
        out[name] = {**suite, "averages": averages}
    return out


def _validation_brief(report: dict | None) -> dict | None:
    """Which validation a corrected rate rests on, so a reader can judge it."""
    if not report:
        return None
    return {k: report.get(k) for k in ("labels", "labels_hash", "n", "agreement", "cohen_kappa", "tp", "fn", "tn", "fp", "unparsed")}


def _chat(sample: data.Sample, system_prompt: str | None) -> list[dict]:
    chat = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return chat + [{"role": "user", "content": sample.prompt}]


def _slug(model: str) -> str:
    name = Path(model).name or model
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in name)[:60]
