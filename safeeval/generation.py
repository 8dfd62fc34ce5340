"""Generation through the store: what the store holds is reused, what it lacks is generated and saved.

Both the model under test and model-based judges generate through here, so a judge's raw outputs are
cached like any other generation: a parser fix re-reads them without calling the judge model again.
"""

from __future__ import annotations

from .backends import Backend, GenParams
from .backends.base import Prompt
from .keys import generation_key
from .progress import Reporter, silent
from .store import Store


def generation_keys(backend: Backend, prompts: list[Prompt], params: GenParams) -> tuple[list[str], list[str]]:
    """The generation key's components; a change in any one is a cache miss, never a stale hit:
    - backend name: hf and vllm differ numerically in bf16;
    - model fingerprint: weights, adapter, dtype;
    - sampling parameters;
    - the rendered prompt, exactly as the model sees it;
    - {"merged": True}, only when the backend merged a LoRA adapter into the weights before generating.
      W + scale * B @ A rounded once to bf16 gives other logits than W x + scale * B (A x), so merged and
      unmerged outputs differ. Appended only when merged, so every unmerged key stays byte-identical to the
      keys made before merging existed; a merged run of an adapter therefore never reuses a generation cached
      by an earlier (unmerged) run of that adapter, and regenerates it once."""
    rendered = [backend.render(p) for p in prompts]
    merged = getattr(backend, "merged", False)
    return rendered, [generation_key(backend.name, backend.fingerprint, params.as_dict(), r, merged) for r in rendered]


def missing(keys: list[str], have: dict) -> list[int]:
    """Positions of the keys the store lacks, each key once (the same prompt may recur)."""
    first = {}
    for i, k in enumerate(keys):
        if k not in have:
            first.setdefault(k, i)
    return list(first.values())


def generate_cached(
    backend: Backend,
    store: Store,
    prompts: list[Prompt],
    params: GenParams,
    reporter: Reporter = silent,
    label: str = "generating",
) -> tuple[list[str], dict[str, dict], int]:
    """Return (keys, generations by key, number generated now); each finished group is committed at once."""
    rendered, keys = generation_keys(backend, prompts, params)
    pending = missing(keys, store.get_generations(keys))
    if pending:
        with reporter(label, len(pending)) as advance:
            for group in backend.generate([prompts[i] for i in pending], params):
                rows = []
                for c in group:
                    i = pending[c.index]
                    rows.append(
                        {
                            "key": keys[i],
                            "model": backend.fingerprint,
                            "backend": backend.name,
                            "params": params.as_dict(),
                            "prompt": rendered[i],
                            "response": c.text,
                            "finish_reason": c.finish_reason,
                            "n_tokens": c.n_tokens,
                        }
                    )
                store.put_generations(rows)
                advance(len(rows))
    return keys, store.get_generations(keys), len(pending)
