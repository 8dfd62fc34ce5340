"""Scoring an adapter on merged weights: the same model, a generation key of its own, recorded in results.json."""

from __future__ import annotations

import json

from safeeval.backends import GenParams, make_backend
from safeeval.generation import generation_keys
from safeeval.keys import key
from safeeval.run import ScoreConfig, score

CHATS = [
    [{"role": "user", "content": text}]
    for text in ["Write a poem about the sea.", "Hi", "Explain how vaccines train the immune system.", "Sorry?"]
]


def _texts(backend, params):
    got = {c.index: c.text for group in backend.generate(CHATS, params) for c in group}
    return [got[i] for i in range(len(CHATS))]


def test_merged_weights_generate_what_the_unmerged_adapter_does(tiny_model, tiny_adapter):
    params = GenParams(max_new_tokens=10)
    merged = make_backend("hf", str(tiny_model), dtype="float32", adapter=str(tiny_adapter))
    unmerged = make_backend("hf", str(tiny_model), dtype="float32", adapter=str(tiny_adapter), merge_adapter=False)
    base = make_backend("hf", str(tiny_model), dtype="float32")
    assert merged.merged and not unmerged.merged and not base.merged
    assert merged.fingerprint == unmerged.fingerprint != base.fingerprint  # the same weights and adapter
    # In float32 merging changes no greedy token: it is the same model, with no adapter layers left to run.
    assert _texts(merged, params) == _texts(unmerged, params) != _texts(base, params)
    assert not any("lora_" in name for name, _ in merged.model.named_parameters())
    assert any("lora_" in name for name, _ in unmerged.model.named_parameters())


def test_only_a_merged_generation_gets_the_merged_key_component(tiny_model, tiny_adapter):
    params = GenParams(max_new_tokens=8)
    unmerged = make_backend("hf", str(tiny_model), adapter=str(tiny_adapter), merge_adapter=False)
    base = make_backend("hf", str(tiny_model))
    for backend in (unmerged, base):  # byte-identical to the key made before merging existed
        rendered, keys = generation_keys(backend, CHATS, params)
        assert keys == [key("generation", "hf", backend.fingerprint, params.as_dict(), r) for r in rendered]
    merged = make_backend("hf", str(tiny_model), adapter=str(tiny_adapter))
    rendered, keys = generation_keys(merged, CHATS, params)
    assert keys == [
        key("generation", "hf", merged.fingerprint, params.as_dict(), r, {"merged": True}) for r in rendered
    ]
    assert set(keys).isdisjoint(generation_keys(unmerged, CHATS, params)[1])


def test_results_record_merged_and_a_merged_run_regenerates_what_an_unmerged_one_cached(
    tiny_model, tiny_adapter, tmp_path
):
    def run(name: str, **options):
        cfg = ScoreConfig(
            model=str(tiny_model),
            tasks=["smoke"],
            max_new_tokens=6,
            out=tmp_path / name,
            store=tmp_path / "store.sqlite",
            backend_options={"batch_size": 8, **options},
        )
        return score(cfg)

    unmerged = run("unmerged", adapter=str(tiny_adapter), merge_adapter=False)
    merged = run("merged", adapter=str(tiny_adapter))
    assert unmerged.counts["generated_now"] == merged.counts["generated_now"] == 40  # no stale hit
    assert run("merged", adapter=str(tiny_adapter)).counts["generated_now"] == 0  # its own cache serves it
    assert run("base").model.merged is False
    recorded = {
        name: json.loads((tmp_path / name / "results.json").read_text())["model"]["merged"]
        for name in ("unmerged", "merged", "base")
    }
    assert recorded == {"unmerged": False, "merged": True, "base": False}
    rows = [json.loads(line) for line in (tmp_path / "merged" / "samples.jsonl").read_text().splitlines()]
    assert {r["generation_key"] for r in rows}.isdisjoint(
        json.loads(line)["generation_key"]
        for line in (tmp_path / "unmerged" / "samples.jsonl").read_text().splitlines()
    )
