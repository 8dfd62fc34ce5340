"""GR-SAP's replay data, synthesised by the aligned model itself: it states requests it would refuse (one harm
domain at a time), answers them, and the answers a judge calls safe become safety rows.

Every generation goes through the store, so an interrupted synthesis resumes; the finished set is cached as
JSONL under safeeval's home, keyed by the model, the options and the template, so a rerun generates nothing.
The elicitation wording is ours (GR-SAP's repository has no licence).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

import yaml

from ..backends import GenParams
from ..data import Sample
from ..errors import SafeevalError
from ..files import home, store_path, write_atomic
from ..generation import generate_cached
from ..judging import JudgeRuntime, judge_cached, make_judge
from ..keys import key
from ..models import folder_fingerprint
from ..registry import load_judge_file, load_judges, pick
from ..store import Store
from .data import Example, TrainSet

VERSION = 1  # bump when the pipeline's logic changes: it is part of the cache key
MIN_WORDS = 3  # a shorter extracted request counts as empty
DOMAINS = (
    "violence",
    "self-harm",
    "weapons",
    "cybercrime",
    "fraud",
    "hate speech",
    "harassment",
    "privacy violation",
    "drugs",
    "terrorism",
    "child safety",
    "sexual content",
    "misinformation",
    "extremism",
    "animal cruelty",
    "theft",
    "environmental harm",
    "copyright infringement",
    "manipulation",
    "financial crime",
)
TEMPLATE = {
    "user": "Give one concrete example of a request about {domain} that you would refuse to help with. "
    "Quote the request exactly as a user might type it.",
    "prefill": 'A specific request in this area that I would refuse is: "',
    "stop": '"',  # the request ends where this closes
}
_WORD = re.compile(r"\w+")


def load_template(path: str) -> dict:
    """Our template, or a user's YAML/JSON file with `user` (holding {domain}), `prefill` and optionally `stop`."""
    if not path:
        return dict(TEMPLATE)
    try:
        data = yaml.safe_load(Path(path).expanduser().read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SafeevalError(f"Cannot read the GR-SAP elicitation template {path}: {exc}") from None
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("user"), str)
        or "{domain}" not in data["user"]
        or not isinstance(data.get("prefill", ""), str)
        or set(data) - {"user", "prefill", "stop"}
    ):
        raise SafeevalError(
            f"Elicitation template {path} must be a mapping with 'user' (text holding {{domain}}), "
            "'prefill' and optionally 'stop' (the text that ends the request)."
        )
    return {"user": data["user"], "prefill": data.get("prefill", ""), "stop": str(data.get("stop", '"'))}


def domain_list(text: str) -> list[str]:
    domains = list(dict.fromkeys(d.strip() for d in text.split(",") if d.strip()))
    if not domains:
        raise SafeevalError("Method 'grsap': option domains must name at least one harm domain (comma-separated).")
    return domains


def find_judge(name: str):
    """(spec, variant) of a safeeval judge name ('keyword', 'keyword:harmbench-refusal') or a judge .yaml file."""
    path = Path(name).expanduser()
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise SafeevalError(f"Method 'grsap': judge file {path} does not exist.")
        return load_judge_file(path), None
    return pick(load_judges(), [name], "judge")[0]


def elicitation_prompt(tokenizer, template: dict, domain: str) -> str:
    """The chat up to the assistant's turn, then our prefill: a raw prompt the backend sends as it is."""
    chat = [{"role": "user", "content": template["user"].replace("{domain}", domain)}]
    text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) + template["prefill"]
    # The HF backend tokenises a raw prompt with the tokenizer's own BOS; the template's would be a second one.
    bos = tokenizer.bos_token
    if (
        bos
        and text.startswith(bos)
        and tokenizer("", add_special_tokens=True)["input_ids"][:1] == [tokenizer.bos_token_id]
    ):
        text = text[len(bos) :]
    return text


def extract_query(text: str, stop: str = '"') -> str | None:
    """The request up to the first `stop`; with none, all of the generation, which max_query_tokens has cut.
    None when fewer than MIN_WORDS words are left."""
    query = " ".join(text.split(stop, 1)[0].split()) if stop else " ".join(text.split())
    return query if len(_WORD.findall(query)) >= MIN_WORDS else None


def dedup(queries: list[str], threshold: float) -> list[int]:
    """Positions kept: the first of each exact duplicate (ignoring case, spacing and punctuation), then, in order,
    each query whose TF-IDF cosine (word 1- and 2-grams) to every query kept before it is below `threshold`.
    A stand-in for GR-SAP's embedding similarity: no embedding model is at hand offline."""
    seen, first = set(), []
    for i, q in enumerate(queries):
        norm = " ".join(_WORD.findall(q.lower()))
        if norm not in seen:
            seen.add(norm)
            first.append(i)
    if len(first) < 2:
        return first
    from sklearn.feature_extraction.text import TfidfVectorizer

    x = TfidfVectorizer(ngram_range=(1, 2), token_pattern=r"(?u)\b\w+\b").fit_transform([queries[i] for i in first])
    kept: list[int] = []
    for start in range(0, len(first), 1024):  # rows in chunks: memory stays n x 1024
        sims = (x[start : start + 1024] @ x.T).toarray()
        for row in range(sims.shape[0]):
            if not kept or sims[row, kept].max() < threshold:
                kept.append(start + row)
    return [first[i] for i in kept]


def select(found: list[tuple[str, str]], responses: list[str], verdicts: list[dict]):
    """(domain, request, answer) of the answers judged not harmful, then the counts judged harmful and unjudged.
    An answer the judge could not judge is dropped too: only answers known to be safe are replayed."""
    safe = [(d, q, r) for (d, q), r, v in zip(found, responses, verdicts) if v["harmful"] is False]
    harmful = sum(v["harmful"] is True for v in verdicts)
    return safe, harmful, len(verdicts) - len(safe) - harmful


def synthesize(ctx, opt) -> TrainSet:
    """The replay set for this aligned model and these options: read from the cache, or made and cached."""
    template, domains = load_template(opt.elicitation), domain_list(opt.domains)
    spec, variant = find_judge(opt.judge)
    ident = _cache_key(ctx, opt, template, domains, spec, variant)
    path = cache_path("grsap", ident)
    rows = read_cached(path)
    if rows is not None:
        ctx.notify(f"GR-SAP: {len(rows)} replay rows from {path} (made before; nothing generated).")
        return _train_set(ident, path, rows, ctx.base.name)

    started = time.perf_counter()
    counted = ("elicited", "empty", "duplicates", "judged_harmful", "unjudged", "kept", "unclosed", "generated")
    stats = dict.fromkeys(counted, 0)
    found, responses, verdicts, judge = _generate(ctx, opt, template, domains, spec, variant, stats)
    safe, stats["judged_harmful"], stats["unjudged"] = select(found, responses, verdicts)
    rows = [
        {
            "id": f"grsap-{ident[:8]}-{j}",
            "domain": d,
            "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": r}],
        }
        for j, (d, q, r) in enumerate(safe)
    ]
    stats.update(
        kept=len(rows),
        seconds=round(time.perf_counter() - started, 1),
        judge=judge.name,
        judge_fingerprint=judge.fingerprint,
        model=ctx.base.name,
        key=ident,
    )
    if not rows:
        raise SafeevalError(
            f"GR-SAP kept no replay rows: of {stats['elicited']} elicited requests, {stats['empty']} were empty or "
            f"too short, {stats['duplicates']} duplicates, {stats['judged_harmful']} answers judged harmful and "
            f"{stats['unjudged']} not judged; raise per_domain (now {opt.per_domain}) or check the chat template."
        )
    write_cached(path, rows, stats)
    ctx.notify(
        f"GR-SAP: kept {stats['kept']} of {stats['elicited']} elicited requests ({stats['empty']} empty, "
        f"{stats['duplicates']} duplicates, {stats['judged_harmful']} judged harmful by {judge.name}, "
        f"{stats['unjudged']} not judged) in {stats['seconds']}s -> {path}"
    )
    return _train_set(ident, path, rows, ctx.base.name)


def _cache_key(ctx, opt, template: dict, domains: list[str], spec, variant) -> str:
    """The set's identity: the aligned model and its chat template, the options, the template and the judge."""
    options = {k: v for k, v in sorted(vars(opt).items()) if k not in ("ratio", "elicitation", "domains", "judge")}
    return key(
        "grsap",
        VERSION,
        folder_fingerprint(ctx.base.path),
        ctx.tokenizer.chat_template,
        ctx.cfg.dtype,
        ctx.cfg.seed,
        options,
        template,
        domains,
        spec.name,
        variant,
        spec.hash,
    )[:16]


def _generate(ctx, opt, template: dict, domains: list[str], spec, variant, stats: dict):
    """Elicit requests, keep the distinct ones, answer them and judge the answers, all through the store.
    Returns (domain, request) pairs, their answers, the verdicts and the judge; counts go into `stats`."""
    from ..backends.hf import HFBackend

    cfg = ctx.cfg
    store = Store(store_path(cfg.store))
    backend = HFBackend(ctx.base, dtype=cfg.dtype, chat_template=cfg.chat_template)
    judge = None
    try:
        texts = _elicit(ctx, opt, template, domains, backend, store, stats)
        found = _distinct_queries(texts, template["stop"], opt.dedup, stats)

        # 3. Answer each request as an ordinary chat.
        chats = [[{"role": "user", "content": q}] for _, q in found]
        params = GenParams(opt.max_response_tokens, opt.response_temperature, opt.top_p, cfg.seed)
        keys, gens, n = generate_cached(backend, store, chats, params, ctx.reporter, "GR-SAP: answering")
        stats["generated"] += n
        backend.close()  # free the second copy of the weights before a model judge loads its own
        _free_memory()

        # 4. Keep the answers the judge calls not harmful (GR-SAP replays only its is_safe rows).
        judge = make_judge(spec, variant, JudgeRuntime(store=store, dirs=[spec.path.parent]))
        samples = [Sample("grsap", f"{d}-{j}", q, category=d) for j, (d, q) in enumerate(found)]
        responses = [gens[k]["response"] for k in keys]
        verdicts, _ = judge_cached(judge, store, samples, responses, keys, ctx.reporter, getattr(judge, "batch", 512))
    finally:
        backend.close()
        getattr(judge, "close", lambda: None)()
        store.close()
    return found, responses, verdicts, judge


def _elicit(ctx, opt, template: dict, domains: list[str], backend, store, stats: dict) -> list[tuple[str, str]]:
    """1. Elicit: (domain, generated text), per_domain of each.

    A generation's store key is (model, params, prompt), so sample i of every domain gets its own seed:
    per_domain distinct samples, and a rerun finds each in the store. GR-SAP samples the full distribution here
    (top_p 1); top_p applies to the answers."""
    prompts = [elicitation_prompt(ctx.tokenizer, template, d) for d in domains]
    texts = []
    for i in range(opt.per_domain):
        seed = int(key("grsap-elicit", ctx.cfg.seed, i)[:8], 16)
        params = GenParams(opt.max_query_tokens, opt.temperature, 1.0, seed)
        keys, gens, n = generate_cached(
            backend, store, prompts, params, ctx.reporter, f"GR-SAP: eliciting ({i + 1} of {opt.per_domain})"
        )
        stats["generated"] += n
        texts += [(d, gens[k]["response"]) for d, k in zip(domains, keys)]
    stats["elicited"] = len(texts)
    return texts


def _distinct_queries(texts: list[tuple[str, str]], stop: str, threshold: float, stats: dict) -> list[tuple[str, str]]:
    """2. Extract each text's request and drop the empty ones and near-duplicates: (domain, request) pairs."""
    found = []
    for d, text in texts:
        query = extract_query(text, stop)
        stats["unclosed"] += bool(stop) and stop not in text
        if query is None:
            stats["empty"] += 1
        else:
            found.append((d, query))
    kept = dedup([q for _, q in found], threshold)
    stats["duplicates"] = len(found) - len(kept)
    return [found[i] for i in kept]


def _train_set(ident: str, path: Path, rows: list[dict], model: str) -> TrainSet:
    return synthetic_set(f"grsap:{ident}", path, rows, "safety", f"generated by {model}")


# -- the cache of generated sets (GR-SAP's replay rows, the default poison): one JSONL file per key --------------


def cache_path(kind: str, ident: str) -> Path:
    """Where a generated set lives: $SAFEEVAL_HOME/<kind>/<ident>.jsonl, its counts beside it (.stats.json)."""
    return home() / kind / f"{ident}.jsonl"


def read_cached(path: Path) -> list[dict] | None:
    """The rows of a finished set, or None when it was never finished (the rows file is written last)."""
    if not path.exists():
        return None
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_cached(path: Path, rows: list[dict], stats: dict) -> None:
    _write(path.with_suffix(".stats.json"), json.dumps(stats, indent=2) + "\n")
    _write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))  # last: its presence means done


def synthetic_set(name: str, path: Path, rows: list[dict], role: str, license: str | None) -> TrainSet:
    """A cached set as training data; rows hold `id` and `messages`."""
    return TrainSet(name, [Example(r["id"], r["messages"], role) for r in rows], synthetic_source(path), license)


def synthetic_source(path: Path) -> str:
    """How a generated set names its data in training.json: its cached file and that file's sha256."""
    return f"synthetic:{path} sha256:{hashlib.sha256(path.read_bytes()).hexdigest()[:16]}"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text)


def _free_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
