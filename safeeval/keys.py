"""Every hash safeeval names things by: store keys, fingerprints, spec and config hashes.

A key is a cache's promise that equal keys mean equal inputs, so each component of a key is listed here with
its reason. tests/test_golden_keys.py pins the keys for fixed inputs: changing one is a deliberate cache miss
for every user, made here and nowhere else.

Deliberate changes since the keys were pinned (2026-12-01), each a cache miss on purpose:
- A training run's config hash (its folder name, and what a sweep resumes by) leaves out the poison settings of
  a benign run, which reads no poison: the default poison became `hh-harmful` (harmful content, disjoint from
  every benchmark), and a benign run must not change identity with it. Benign runs' hashes changed once.
- Generations of a LoRA adapter scored by the hf backend carry the `merged` component (generation_key): it now
  merges the adapter into its weights before generating (1.39x faster on CPU, benchmarks/README.md), and its
  outputs differ slightly (34 of 80 greedy responses).
- A multi-process training run's config hash includes its number of processes (a single-process run's is as it
  was): the global batch, and so the mix, depends on it.
- Which prompts `--limit` keeps is drawn with `subset_seed` (default 0), no longer with the run's seed: runs
  scored with --seed N (or trained with seed N) and a limit now draw the subset of seed 0, so every model of a
  study is scored on the same prompts; such runs regenerate once.
- XSTest's task spec declares its own report (`report: xstest`), so its spec hash changed: `check` refuses to
  compare an XSTest run scored before with one scored after (a benchmark-version difference, said in one sentence).
- The store's `runs` table is keyed by run_id (below) instead of the run folder's path: the same run written on
  two machines is one row (old stores are upgraded on open).
- Model judges break markers case-insensitively in the prompts they build (one neutralize() for all judges), so a
  judge prompt whose response holds a case variant of a special token or tag is new. No other prompt changed.
"""

from __future__ import annotations

import hashlib
import json


def digest(obj, *, length: int = 16, ascii: bool = True) -> str:
    """sha256 of obj as canonical JSON (sorted keys), hex, cut to `length`. `ascii` is the JSON escaping of
    non-ASCII text: specs and store keys were hashed unescaped, fingerprints escaped; both stay as they were."""
    text = json.dumps(obj, sort_keys=True, ensure_ascii=ascii)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def key(*parts: object) -> str:
    """A store key: the full sha256 of its parts."""
    return digest(list(parts), length=64, ascii=False)


def generation_key(backend: str, model: str, params: dict, rendered: str, merged: bool = False) -> str:
    """One generation. Components:
    - backend name: hf and vllm differ numerically in bfloat16, so each engine's output is its own;
    - model fingerprint: weights, adapter and dtype (model_fingerprint below);
    - sampling parameters, seed included;
    - the exact rendered prompt, chat template applied (an endpoint's: the messages as canonical JSON);
    - {"merged": True}, only when a LoRA adapter was merged into the weights before generating: W + s B A rounded
      once to bf16 gives other logits than W x + s B (A x). Appended only when merged, so every unmerged key stays
      byte-identical to the keys made before merging existed; a merged run of an adapter never reuses a generation
      an earlier unmerged run cached, and regenerates it once."""
    return key("generation", backend, model, params, rendered, *([{"merged": True}] if merged else []))


def judgment_key(judge: str, generation: str, sample) -> str:
    """One verdict. Components: the judge's fingerprint (kind, parser version, its model and prompt format), the
    generation judged, and the sample's target, needs_judge and metadata: the same answer to the same prompt can
    be right for one target and wrong for another, and a judge may read the metadata (a behavior's context)."""
    return key("judgment", judge, generation, key(sample.target, sample.needs_judge, sample.meta))


def model_fingerprint(weights: str, adapter: str, dtype: str) -> str:
    """A local model as an engine runs it: the weights folder's hash, the adapter folder's ('' for none), the dtype."""
    return hashlib.sha256(f"{weights}|{adapter}|{dtype}".encode()).hexdigest()[:16]


def endpoint_fingerprint(base_url: str, model: str) -> str:
    """A model behind an OpenAI-compatible endpoint: all we can know is where it is served and its name."""
    return hashlib.sha256(f"openai|{base_url}|{model}".encode()).hexdigest()[:16]


def run_id(result: dict) -> str:
    """One scoring run in the store's runs table, wherever it ran. No folder path is part of it: the same run
    scored on two machines (a retried cluster step, a shard merged twice) is one row, and two machines' runs that
    share a local path are two. Components, all read from its results.json:
    - the model's fingerprint (its name where none is recorded) and the backend that ran it;
    - each task's spec hash and the ids of the samples scored;
    - each judge's and scorer's fingerprint;
    - the generation settings, the seeds and the limit;
    - for a trained model, its training configuration's hash and stage (and method, scenario, seed)."""
    model = result.get("model") or {}
    training = result.get("training") or {}
    return digest(
        {
            "model": [model.get("fingerprint") or model.get("name"), model.get("backend")],
            "tasks": {
                label: [t.get("spec_hash"), t.get("sample_ids_hash")]
                for label, t in (result.get("tasks") or {}).items()
            },
            "evaluators": {
                name: (info or {}).get("fingerprint")
                for part in ("judges", "scorers")
                for name, info in (result.get(part) or {}).items()
            },
            "generation": result.get("generation") or {},
            "seeds": [result.get("seed"), result.get("subset_seed"), result.get("limit")],
            "training": [training.get(k) for k in ("config_hash", "stage", "method", "scenario", "seed")],
        },
        length=32,
    )
