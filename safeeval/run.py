"""The path of one scoring run: specs -> samples -> generations -> verdicts -> metrics -> results.

The run names no benchmark and no judge: a task source (the YAML registry, or a plug-in such as `lmeval:`)
turns names into samples, and every judge and scorer carries its own summary of its verdicts.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from . import __version__, data, degeneration, metrics, registry, results
from .backends import Backend, GenParams, make_backend
from .cards import harm_validation, judge_card
from .config import ScoreConfig
from .errors import SafeevalError
from .files import store_path
from .generation import generate_cached
from .judging import Judge, JudgeRuntime, judge_cached, make_judge
from .keys import key
from .plugins import Registry
from .progress import Reporter, silent
from .results import ModelInfo, RunResult, SampleRecord, TaskInfo, TrainingInfo
from .scoring import make_scorer
from .store import Store

__all__ = ["ScoreConfig", "Prepared", "prepare", "score"]

# Task names of the form SOURCE:NAME that a plug-in resolves instead of the YAML registry; each entry is
# a function (name, data_root) -> (Spec, data.Loaded).
TASK_SOURCES = Registry("task source", {"lmeval": "safeeval.lmeval:load_lmeval_task"})
# A task spec's `report: NAME` adds that benchmark's own figures beside each judge's summary; each entry is a
# function (verdicts, samples, seed) -> dict.
TASK_REPORTS = Registry("task report", {"xstest": "safeeval.judging.refusal:xstest_report"})


@dataclass
class Prepared:
    """Everything a run needs before it touches a model, so bad input fails in seconds."""

    tasks: list[tuple[str, data.Loaded, registry.Spec]]
    judges: list[tuple[registry.Spec, str | None]]  # built once the store is open: model judges cache in it
    suites: dict[str, dict] = field(default_factory=dict)  # name -> {tasks, metric, unavailable}


def prepare(cfg: ScoreConfig) -> Prepared:
    # Each name once: a task or judge listed twice would be scored twice under one label.
    names, suites = _expand_suites(cfg.tasks, cfg.tasks_dirs)
    native = [n for n in names if _source(n) is None]
    picked = dict(zip(native, registry.pick(registry.load_tasks(cfg.tasks_dirs), native, "task")))
    judge_specs = registry.pick(registry.load_judges(cfg.judges_dirs), list(dict.fromkeys(cfg.judges)), "judge")
    root = data.data_dir(cfg.data_dir)
    loaded = []
    for name in names:
        try:
            if (source := _source(name)) is not None:
                spec, got = TASK_SOURCES.get(source)(name, root)
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
        got.samples = data.subsample(got.samples, cfg.limit, cfg.subset_seed)
        label = spec.name if got.split is None else f"{spec.name}:{got.split}"
        if label not in {lab for lab, _, _ in loaded}:  # 'harmbench' and 'harmbench:test' are one task
            loaded.append((label, got, spec))
    return Prepared(loaded, judge_specs, suites)


def _source(name: str) -> str | None:
    prefix, sep, _ = name.strip().partition(":")
    return prefix if sep and prefix in TASK_SOURCES else None


@dataclass
class _Outcome:
    """What generation and judging produced, by item position."""

    items: list  # (label, spec, sample)
    chats: list
    gen_keys: list[str]
    generations: dict[str, dict]
    verdicts: dict[str, dict[int, dict]]
    judges: list[Judge]
    scorers: dict
    validated: dict  # judge name -> every validation of it in the store (the judge card)
    validations: dict  # judge name -> the harm validation a corrected ASR rests on
    generated_now: int
    judged_now: int


def score(
    cfg: ScoreConfig, reporter: Reporter = silent, backend: Backend | None = None, contamination: dict | None = None
) -> RunResult:
    """Run (or resume) a scoring run and write results.json and samples.jsonl; returns the result.
    contamination: a trained model's check of its scored prompts against its training data (train/evaluate.py)."""
    started = datetime.now(timezone.utc)
    prep = prepare(cfg)
    store = Store(store_path(cfg.store))
    try:
        backend, done = _evaluate(cfg, prep, store, reporter, backend)
    finally:
        store.close()
    responses = [done.generations[k]["response"] for k in done.gen_keys]
    degen = [
        degeneration.signals(r, done.generations[k]["finish_reason"], item[2].prompt)
        for r, k, item in zip(responses, done.gen_keys, done.items)
    ]
    perplexity = _perplexity(cfg, responses, degen)
    block = _metrics(prep, done, degen, cfg.seed)
    out = Path(cfg.out or Path("safeeval-runs") / f"{_slug(cfg.model)}-{started.strftime('%Y%m%d-%H%M%S')}")
    result = RunResult(
        model=ModelInfo(**_model_info(backend)),
        metrics=block,
        tasks=_task_infos(prep),
        judges=_judge_blocks(done),
        scorers={s.name: s.info for s in done.scorers.values()},
        generation=_generation_block(cfg, prep),
        training=TrainingInfo(**_training_fields(cfg.training)) if cfg.training else None,
        seed=cfg.seed,
        subset_seed=cfg.subset_seed,
        limit=cfg.limit,
        config=cfg.settings(),
        suites=_suite_results(prep, block),
        degeneration=_degeneration_blocks(prep, done, degen, cfg.seed),
        degeneration_perplexity=perplexity,
        contamination=contamination,
        counts=_counts(done),
        command=cfg.command,
        store=str(store.path),
        versions=results.versions(),
        started_at=started.isoformat(),
        finished_at=datetime.now(timezone.utc).isoformat(),
        safeeval_version=__version__,
    )
    results.write(out, result, _sample_records(done, responses, degen))
    with contextlib.closing(Store(store.path)) as db:  # leaderboards can read every run from the store
        db.put_run(str(out.resolve()), result.to_dict())
    return result


def _task_infos(prep: Prepared) -> dict[str, TaskInfo]:
    """Per task label: which spec, split and data file, and a hash of the scored prompt ids."""
    return {
        label: TaskInfo(
            spec.name, spec.hash, got.split, got.source, len(got.samples), key([s.id for s in got.samples])[:16]
        )
        for label, got, spec in prep.tasks
    }


def _judge_blocks(done: _Outcome) -> dict[str, dict]:
    """Per judge: its info, a brief of its validation against human labels, and its card."""
    return {
        j.name: {
            **j.info,
            "validation": _validation_brief(done.validations.get(j.name)),
            "card": judge_card(done.validated[j.name]),
        }
        for j in done.judges
    }


def _generation_block(cfg: ScoreConfig, prep: Prepared) -> dict:
    """The sampling parameters and system prompt, and the tasks whose answer budget was raised."""
    return {
        **cfg.params().as_dict(),
        "system_prompt": cfg.system_prompt,
        **({"answer_tokens": raised} if (raised := _raised(prep, cfg.params())) else {}),
    }


def _degeneration_blocks(prep: Prepared, done: _Outcome, degen: list[dict], seed: int) -> dict[str, dict]:
    """Per task label: the broken-output summary of its responses."""
    return {
        label: degeneration.summary(
            [{"degeneration": degen[i]} for i, (lab, _, _) in enumerate(done.items) if lab == label], seed
        )
        for label, _, _ in prep.tasks
    }


def _counts(done: _Outcome) -> dict[str, int]:
    return {
        "samples": len(done.items),
        "unique_prompts": len(set(done.gen_keys)),
        "generated_now": done.generated_now,
        "judged_now": done.judged_now,
        "truncated": sum(done.generations[k]["finish_reason"] == "length" for k in done.gen_keys),
    }


def _evaluate(cfg: ScoreConfig, prep: Prepared, store: Store, reporter: Reporter, backend: Backend | None):
    """Generate what the store lacks, then judge (safety tasks) and score (utility tasks) what it lacks."""
    own_backend = backend is None
    runtime = JudgeRuntime(
        store=store,
        reporter=reporter,
        backend=cfg.judge_backend,
        models=cfg.judge_models,
        options=cfg.judge_options,
        dirs=cfg.judges_dirs,
    )
    judges: list[Judge] = []
    scorers = {label: make_scorer(spec, cfg.sandbox_allow) for label, _, spec in prep.tasks if spec.kind == "utility"}
    try:
        # Judges first: a judge model that cannot be found stops the run before any generation.
        if any(spec.kind != "utility" for _, _, spec in prep.tasks):
            judges = [make_judge(spec, variant, runtime) for spec, variant in prep.judges]
        backend = backend or make_backend(cfg.backend, cfg.model, **cfg.backend_options)
        items = [(label, spec, s) for label, got, spec in prep.tasks for s in got.samples]
        chats = [_chat(s, cfg.system_prompt) for _, _, s in items]
        gen_keys, generations, generated_now = _generate(backend, store, items, chats, cfg.params(), reporter)
        responses = [generations[k]["response"] for k in gen_keys]
        # Judges read safety tasks' answers; each utility task's scorer reads its own. Verdicts by position.
        evaluators = [(j, [i for i, (_, spec, _) in enumerate(items) if spec.kind != "utility"]) for j in judges]
        evaluators += [(s, [i for i, (lab, _, _) in enumerate(items) if lab == label]) for label, s in scorers.items()]
        verdicts: dict[str, dict[int, dict]] = {}
        judged_now = 0
        for evaluator, idx in evaluators:
            found, n = judge_cached(
                evaluator,
                store,
                [items[i][2] for i in idx],
                [responses[i] for i in idx],
                [gen_keys[i] for i in idx],
                reporter,
                getattr(evaluator, "batch", cfg.judge_batch),
            )
            verdicts.setdefault(evaluator.name, {}).update(zip(idx, found))
            judged_now += n
        validated = {j.name: store.get_validations(j.fingerprint) for j in judges}
        validations = {name: harm_validation(reports) for name, reports in validated.items()}  # Rogan-Gladen: harm
    finally:
        for evaluator in [*judges, *scorers.values()]:
            getattr(evaluator, "close", lambda: None)()
        if own_backend and backend is not None:
            backend.close()
    return backend, _Outcome(
        items,
        chats,
        gen_keys,
        generations,
        verdicts,
        judges,
        scorers,
        validated,
        validations,
        generated_now,
        judged_now,
    )


def _model_info(backend: Backend) -> dict:
    info = {**backend.info, "backend": backend.name}
    known = {"name", "backend", "fingerprint", "path", "source", "adapter", "dtype", "merged"}
    return {**{k: v for k, v in info.items() if k in known}, "extra": {k: v for k, v in info.items() if k not in known}}


def _training_fields(block: dict) -> dict:
    known = {"method", "scenario", "seed", "task", "stage", "options", "poison_ratio"}
    return {
        **{k: v for k, v in block.items() if k in known},
        "extra": {k: v for k, v in block.items() if k not in known},
    }


def _sample_records(done: _Outcome, responses: list[str], degen: list[dict]) -> list[SampleRecord]:
    return [
        SampleRecord(
            task=label,
            id=s.id,
            response=responses[i],
            messages=done.chats[i],
            category=s.category,
            harmful=s.harmful,
            meta=s.meta,
            generation_key=done.gen_keys[i],
            finish_reason=done.generations[done.gen_keys[i]]["finish_reason"],
            n_tokens=done.generations[done.gen_keys[i]]["n_tokens"],
            degeneration=degen[i],
            verdicts={name: found[i] for name, found in done.verdicts.items() if i in found},
        )
        for i, (label, _, s) in enumerate(done.items)
    ]


def _task_params(spec: registry.Spec, params: GenParams) -> GenParams:
    """A task's answer_tokens is the room its answers need (worked maths, code): a run's smaller
    max_new_tokens is raised to it for that task's prompts, so a short safety run still scores it fairly."""
    need = int(spec.answer_tokens or 0)
    return replace(params, max_new_tokens=need) if need > params.max_new_tokens else params


def _raised(prep: Prepared, params: GenParams) -> dict[str, int]:
    return {label: p.max_new_tokens for label, _, spec in prep.tasks if (p := _task_params(spec, params)) is not params}


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


def _metrics(prep: Prepared, done: _Outcome, degen: list[dict], seed: int) -> dict:
    """Per task and evaluator: the shared summary (ASR and benign refusal, or accuracy), then the evaluator's own."""
    block = {}
    for label, _, spec in prep.tasks:
        idx = [i for i, (lab, _, _) in enumerate(done.items) if lab == label]
        samples = [done.items[i][2] for i in idx]
        if label in done.scorers:
            scorer = done.scorers[label]
            found = [done.verdicts[scorer.name][i] for i in idx]
            block[label] = {
                scorer.name: {**metrics.utility_summary(found, seed), **scorer.summarize(samples, found, seed)}
            }
            continue
        groups = {"category": [s.category for s in samples]} if any(s.category for s in samples) else {}
        for field_name in spec.breakdowns or []:
            groups[field_name] = [s.meta.get(field_name) for s in samples]
        block[label] = {}
        for judge in done.judges:
            found = [done.verdicts[judge.name][i] for i in idx]
            summary = metrics.verdict_summary(
                found,
                [s.harmful for s in samples],
                groups,
                seed,
                done.validations.get(judge.name),
                [degen[i]["degenerate"] for i in idx],
                [degen[i]["shell"] for i in idx],
            )
            if spec.report:
                summary[spec.report] = TASK_REPORTS.get(spec.report)(found, samples, seed)
            block[label][judge.name] = summary
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
        suites[suite] = {
            "tasks": list(spec.data["tasks"]),
            "metric": spec.data["metric"],
            "spec_hash": spec.hash,
            "description": " ".join(str(spec.data.get("description", "")).split()),
            "unavailable": {},
        }
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
            averages[judge] = {
                "value": sum(present.values()) / len(present) if present else None,
                "members": present,
                "missing": missing,
                "complete": not missing,
            }
        out[name] = {**suite, "averages": averages}
    return out


def _validation_brief(report: dict | None) -> dict | None:
    """Which validation a corrected rate rests on, so a reader can judge it."""
    if not report:
        return None
    keys = ("labels", "labels_hash", "n", "agreement", "cohen_kappa", "tp", "fn", "tn", "fp", "unparsed")
    return {k: report.get(k) for k in keys}


def _chat(sample: data.Sample, system_prompt: str | None) -> list[dict]:
    chat = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return chat + [{"role": "user", "content": sample.prompt}]


def _slug(model: str) -> str:
    name = Path(model).name or model
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in name)[:60]
