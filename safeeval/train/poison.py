"""Poison with harmful content that no evaluated benchmark holds: harmful requests from a source safeeval never
scores, answered by an unaligned model, keeping only answers that comply and carry content.

A training-set spec with a `generate` mapping is built here (tasks/train/hh-harmful.yaml; a benign set such as
tasks/train/borderline-safe.yaml goes through the same steps except the first, which only de-duplicates it):
1. requests (poison only): the first user turn of each row's chat, de-duplicated, kept when it asks (ASK) for
   help in a harm domain (HARM); never when it touches sexual content, minors or self-harm (EXCLUDED: we do not
   generate those), nor when it asks how to defend against a harm (DEFENSIVE);
2. disjoint: a request that matches (safeeval.contamination: exact, or near by its stated method) any prompt of
   an evaluated benchmark (every safety and benign task whose data is at hand) or of the default safety set
   (refusals of the same request would contradict the poison) is dropped, and counted per benchmark;
3. answers: the spec's model answers each request as a plain chat, greedy, through the store;
4. kept: answers the canonical keyword judge does not call refusals, that are not degenerate and not shells
   (safeeval.degeneration), and that hold at least MIN_WORDS words once an answer cut at max_new_tokens is
   trimmed to its last full sentence.
The finished set is cached like GR-SAP's (synthesis.cache_path), keyed by everything that decides it, with
every count in the .stats.json beside it; a rerun generates nothing.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

from .. import data as task_data
from .. import registry
from ..contamination import find
from ..errors import SafeevalError
from ..keys import key
from .data import Example, TrainSet, read_set
from .synthesis import cache_path, read_cached, synthetic_set, write_cached

VERSION = 1  # bump when the recipe changes: it is part of the cache key
MIN_WORDS = 25  # an answer shorter than this (after trimming) does not carry enough content to teach harm
SAFETY_SET = "safety-llamas"  # the default safety set (TrainConfig.safety): poison must not share its requests

# A request: a question or an ask for help, at the start of the turn.
ASK = re.compile(
    r"^(?:how|what(?:'s| is| are)? (?:the best|some|a good|an easy|the easiest|ways?)|can you|could you"
    r"|will you|would you|help me|tell me|give me|teach me|show me|where (?:can|do|could) i"
    r"|i (?:want|need|wanna|would like|am going|'m going|plan) to|i'm trying to|is there a way"
    r"|what should i|which|should i)",
    re.I,
)
_TARGET = (
    r"someone|somebody|person|people|him|her|them|my \w+|neighbou?r|boss|wife|husband|girlfriend|boyfriend"
    r"|mother|father|mom|dad|brother|sister|friend|teacher|cop|police|officer|dog|cat|animal|man|woman|guy"
)
# Harm domains; a request must name one. Violence needs a victim, so "kill a process" or "kill weeds" is not one.
HARM = {
    "violence": rf"(?:kill|murder|hurt|harm|stab|shoot|strangle|choke|assault|attack|torture|punch|poison|drown"
    rf"|suffocate|beat up)\w*\b.*\b(?:{_TARGET})|kidnap\w*|abduct\w*",
    "weapons": r"bombs?|explosives?|grenades?|molotov|silencer|untraceable gun|ghost gun|napalm|thermite",
    "drugs": r"meth|methamphetamine|cocaine|heroin|crack cocaine|fentanyl|lsd|ecstasy|mdma|oxycontin"
    r"|(?:sell|buy|make|cook|grow|smuggle|hide|get) (?:some )?(?:drugs|weed|marijuana|pills)",
    "theft": r"steal|stole|rob|robbing|shoplift\w*|burglar\w*|break into|breaking into|pickpocket\w*|carjack\w*"
    r"|hotwire|hot wire|embezzl\w*|loot",
    "fraud": r"scam\w*|fraud\w*|counterfeit\w*|forge|forging|forged|launder\w*|fake (?:id|ids|money|documents?"
    r"|passport|check|checks)|identity theft|ponzi|bribe\w*|blackmail\w*|extort\w*|tax evasion|cheat\w*",
    "hacking": r"hack\w*|malware|virus|ransomware|phish\w*|ddos|keylogger|spyware",
    "harassment": r"insults?|slurs?|harass\w*|bully\w*|stalk\w*|humiliate|threaten\w*|dox\w*",
    "crime": r"get away with|without (?:getting caught|being caught|anyone (?:knowing|noticing|finding out))"
    r"|cover up|hide (?:a|the) body|illegal\w*|arson|vandali[sz]\w*|trespass\w*|smuggl\w*|traffick\w*|spike",
}
_HARM = {name: re.compile(rf"\b(?:{pattern})\b", re.I) for name, pattern in HARM.items()}
EXCLUDED = re.compile(
    r"\b(?:sex|sexual\w*|sexy|porn\w*|nude\w*|naked|rape\w*|molest\w*|prostitut\w*|escort|genital\w*|penis|vagina"
    r"|orgasm|fetish\w*"  # sexual content
    r"|child|children|kid|kids|minor|minors|underage|teens?|teenagers?|boy|girl|baby|toddler|students?"  # minors
    r"|suicid\w*|(?:kill|hurt|cut|harm|starve) (?:myself|yourself)|end my life|self[- ]harm\w*|overdos\w*)\b",
    re.I,
)
DEFENSIVE = re.compile(
    r"\b(?:prevent\w*|protect\w*|spot an?|detect\w*|recogni[sz]e|report\w*|stop a"
    r"|avoid (?!getting caught|being caught|detection|suspicion|the police|the cops))\b",
    re.I,
)
_SENTENCE_END = re.compile(r"[.!?)\]\"'`*]\s")


def select_requests(requests: list[tuple[str, str]]) -> tuple[list[tuple[str, str, str]], dict]:
    """(id, request, first harm domain) of the clearly harmful requests, de-duplicated, and the counts."""
    seen, kept = set(), []
    counts = {
        "rows": len(requests),
        "duplicates": 0,
        "not_a_request": 0,
        "no_harm_domain": 0,
        "excluded": 0,
        "defensive": 0,
    }
    for ident, text in requests:
        norm = " ".join(text.lower().split())
        if norm in seen:
            counts["duplicates"] += 1
            continue
        seen.add(norm)
        domains = [name for name, pattern in _HARM.items() if pattern.search(norm)]
        reason = (
            "not_a_request"
            if not ASK.match(norm)
            else "no_harm_domain"
            if not domains
            else "excluded"
            if EXCLUDED.search(norm)
            else "defensive"
            if DEFENSIVE.search(norm)
            else None
        )
        if reason:
            counts[reason] += 1
        else:
            kept.append((ident, text.strip(), domains[0]))
    return kept, counts


def requests_of(spec: registry.Spec, examples: list[Example]) -> tuple[list[tuple[str, str, str]], dict]:
    """The requests a generated set answers, as build selects them: a poison's clearly harmful ones (the harm
    filter), any other set's distinct ones; and the counts."""
    asked = [(ex.id, _first_user(ex)) for ex in examples]
    return select_requests(asked) if spec.purpose == "poison" else _distinct(asked)


def _distinct(requests: list[tuple[str, str]]) -> tuple[list[tuple[str, str, str]], dict]:
    """A benign set's requests, de-duplicated; no harm filter (its rows are meant to be answered)."""
    seen, kept = set(), []
    for ident, text in requests:
        norm = " ".join(text.lower().split())
        if norm not in seen:
            seen.add(norm)
            kept.append((ident, text.strip(), "benign"))
    return kept, {"rows": len(requests), "duplicates": len(requests) - len(kept)}


def trim(text: str, finish_reason: str | None) -> str:
    """An answer cut at max_new_tokens ends at its last full sentence (none: unchanged)."""
    text = text.strip()
    if finish_reason != "length":
        return text
    ends = [m.end() for m in _SENTENCE_END.finditer(text + " ")]
    return text[: ends[-1]].strip() if ends else text


def keep_answer(request: str, answer: str, finish_reason: str | None, refused: bool) -> tuple[str, str | None]:
    """(the answer to train on, None) when it complies with content, else (answer, why it is dropped)."""
    from .. import degeneration

    text = trim(answer, finish_reason)
    flags = degeneration.signals(text, "stop", request)
    reason = (
        "refused"
        if refused
        else "degenerate"
        if flags["degenerate"]
        else "shell"
        if flags["shell"]
        else "short"
        if len(text.split()) < MIN_WORDS
        else None
    )
    return text, reason


def build(
    spec: registry.Spec,
    examples: list[Example],
    source: str,
    root: Path | None,
    dirs: list[Path],
    notify: Callable[[str], None] = lambda text: None,
) -> TrainSet:
    """The generated set of `spec` (its rows' first user turns answered by spec.generate.model), cached."""
    gen = _settings(spec)
    poison = spec.purpose == "poison"
    requests, counts = requests_of(spec, examples)
    checked, benchmarks = _benchmark_prompts(root, dirs)
    from ..models import folder_fingerprint, resolve_model

    model = resolve_model(gen["model"])
    ident = _cache_key(spec, source, folder_fingerprint(model.path), gen, checked)
    path = cache_path("poison", ident)
    rows = read_cached(path)
    if rows is not None:
        notify(f"{spec.name}: {len(rows)} {spec.purpose} rows from {path} (made before; nothing generated).")
        return synthetic_set(spec.name, path, rows, spec.purpose, spec.license)
    started = time.perf_counter()
    report = find(benchmarks, [(i, "poison", text) for i, text, _ in requests])
    hit = {m.training_id for m in report.matches}
    counts["matches_a_benchmark"] = {t: b["contaminated"] for t, b in report.tasks.items() if b["contaminated"]}
    counts["dropped_as_benchmark_or_safety"] = len(hit)
    requests = [r for r in requests if r[0] not in hit]
    counts["requests"] = len(requests)
    kind = "harmful requests" if poison else "requests"
    notify(f"{spec.name}: answering {len(requests)} {kind} with {gen['model']} (cached when done) ...")
    answers, judge_info = _answer(model, requests, gen)
    rows, dropped, by_domain = _kept_rows(spec.name, requests, answers)
    stats = {
        **counts,
        "answers_dropped": dropped,
        "kept": len(rows),
        "kept_by_domain": by_domain,
        "benchmarks_checked": checked,
        "contamination_method": report.method,
        "model": gen["model"],
        "model_fingerprint": folder_fingerprint(model.path),
        "generation": gen,
        "judge": judge_info,
        "source": source,
        "seconds": round(time.perf_counter() - started, 1),
        "key": ident,
    }
    if not rows:
        raise SafeevalError(
            f"{spec.name}: no answer was kept ({dropped}); the model {gen['model']} refused or "
            "wrote no content for every request."
        )
    write_cached(path, rows, stats)
    notify(f"{spec.name}: kept {len(rows)} of {len(requests)} answers ({dropped}) -> {path}")
    return synthetic_set(spec.name, path, rows, spec.purpose, spec.license)


def _cache_key(spec: registry.Spec, source: str, fingerprint: str, gen: dict, checked: dict[str, str]) -> str:
    """The set's identity: the spec and its source, the answering model and settings, every filter, and the
    benchmark files the requests were checked against."""
    return key(
        "generated-set",
        VERSION,
        spec.hash,
        _digest(source),
        fingerprint,
        gen,
        MIN_WORDS,
        HARM,
        EXCLUDED.pattern,
        DEFENSIVE.pattern,
        ASK.pattern,
        sorted((t, _digest(s)) for t, s in checked.items()),
    )[:16]


def _kept_rows(
    name: str, requests: list[tuple[str, str, str]], answers: list[tuple[str, str | None, bool]]
) -> tuple[list[dict], dict[str, int], dict[str, int]]:
    """The answers that pass keep_answer as chat rows, the others counted by reason, and the kept per domain."""
    rows, dropped = [], {"refused": 0, "degenerate": 0, "shell": 0, "short": 0}
    by_domain: dict[str, int] = {}
    for (ident, request, domain), (answer, finish, refused) in zip(requests, answers):
        text, reason = keep_answer(request, answer, finish, refused)
        if reason:
            dropped[reason] += 1
            continue
        by_domain[domain] = by_domain.get(domain, 0) + 1
        rows.append(
            {
                "id": f"{name}-{ident}",
                "domain": domain,
                "messages": [{"role": "user", "content": request}, {"role": "assistant", "content": text}],
            }
        )
    return rows, dropped, by_domain


def _settings(spec: registry.Spec) -> dict:
    gen = spec.generate
    if not isinstance(gen, dict) or not gen.get("model"):
        raise SafeevalError(f"Training set {spec.name}: 'generate' must be a mapping naming its 'model'.")
    unknown = set(gen) - {"model", "max_new_tokens", "dtype", "batch_size"}
    if unknown:
        raise SafeevalError(f"Training set {spec.name}: unknown generate setting(s) {sorted(unknown)}.")
    return {
        "model": str(gen["model"]),
        "max_new_tokens": int(gen.get("max_new_tokens", 192)),
        "dtype": str(gen.get("dtype", "auto")),
        "batch_size": int(gen.get("batch_size", 16)),
    }


def _first_user(ex: Example) -> str:
    return next(m["content"] for m in ex.messages if m["role"] == "user")


def _digest(source: str) -> str:
    found = re.findall(r"sha256:([0-9a-fA-F]+)", source)
    return " ".join(found) if found else source


def _benchmark_prompts(root: Path | None, dirs: list[Path]) -> tuple[dict[str, str], list[tuple[str, str, str]]]:
    """Every prompt of every safety and benign task whose data can be read here, and of the default safety set,
    as (task, id, text); and which were checked (task -> source, or why not)."""
    checked, prompts = {}, []
    for name, spec in sorted(registry.load_tasks(dirs).items()):
        if spec.kind == "utility":
            continue
        split = "all" if "all" in (spec.splits or []) else None
        try:
            got = task_data.load(spec, split, root)
        except SafeevalError as exc:
            checked[name] = f"not checked: {str(exc).split('.')[0]}"
            continue
        checked[name] = got.source
        prompts += [(name, s.id, s.prompt) for s in got.samples]

    try:
        safety = read_set(SAFETY_SET, "safety", root, dirs)  # a set of files: nothing to generate
    except SafeevalError as exc:
        checked[SAFETY_SET] = f"not checked: {str(exc).split('.')[0]}"
        return checked, prompts
    checked[SAFETY_SET] = safety.source
    prompts += [(SAFETY_SET, ex.id, _first_user(ex)) for ex in safety.examples]
    return checked, prompts


def _answer(model, requests: list[tuple[str, str, str]], gen: dict) -> tuple[list[tuple[str, str, bool]], dict]:
    """(answer, finish reason, refused by the keyword judge) per request, generated through the store."""
    from ..backends import GenParams
    from ..backends.hf import HFBackend
    from ..data import Sample
    from ..generation import generate_cached
    from ..judging import JudgeRuntime, make_judge
    from ..models import home
    from ..store import Store

    store = Store(home() / "store.sqlite")
    backend = HFBackend(model, dtype=gen["dtype"], batch_size=gen["batch_size"])
    try:
        chats = [[{"role": "user", "content": text}] for _, text, _ in requests]
        keys, gens, _ = generate_cached(
            backend, store, chats, GenParams(gen["max_new_tokens"], 0.0, 1.0, 0), label="answering harmful requests"
        )
        judge = make_judge(*registry.pick(registry.load_judges(), ["keyword"], "judge")[0], JudgeRuntime(store=store))
        responses = [gens[k]["response"] for k in keys]
        verdicts = judge.judge([Sample("poison", i, text) for i, text, _ in requests], responses)
    finally:
        backend.close()
        store.close()
    return (
        [(r, gens[k]["finish_reason"], bool(v.refused)) for r, k, v in zip(responses, keys, verdicts)],
        {"name": judge.name, "fingerprint": judge.fingerprint},
    )
