"""The store does not notice a refactor: keys for fixed inputs equal literals recorded before it.

Every literal here was printed by the code as it stood before the wiring was reshaped (commit 2ffda44). A
change to any of them invalidates every user's cached generations and verdicts, so it must be deliberate:
list the new key component in safeeval/keys.py with its reason, and update the literal in the same commit.
"""

from __future__ import annotations

from types import SimpleNamespace

from safeeval.backends.base import GenParams, render_as_json
from safeeval.data import Sample
from safeeval.generation import generation_keys
from safeeval.judging import JudgeRuntime, judge_cached, make_judge
from safeeval.keys import key
from safeeval.models import folder_fingerprint
from safeeval.registry import load_judges, load_tasks
from safeeval.scoring import make_scorer
from safeeval.store import Store
from safeeval.train.config import TrainConfig

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}]


class _Endpoint:
    """A backend as the key sees it: a name, a fingerprint and a renderer (the openai backend's own)."""

    name = "openai"
    fingerprint = "0123456789abcdef"
    info = {"name": "stand-in"}

    def render(self, chat):
        return render_as_json(chat)


def test_generation_keys_are_unchanged():
    rendered, keys = generation_keys(_Endpoint(), [CHAT, "raw prompt"], GenParams(32, 0.0, 1.0, 7))
    assert rendered[0] == ('[{"content":"Be brief.","role":"system"},{"content":"Name a colour.","role":"user"}]')
    assert keys == [
        "1142a68a3db4de5f6a755936f8478dc8681675a2e5322baa4a3a7c6427a390ea",
        "a8b82ba7c8a8ddac97ad0421a63c8ff09231dd610901132814e15071d39a6255",
    ]


def test_the_merged_component_is_added_only_when_merged():
    from safeeval.keys import generation_key

    params = {"max_new_tokens": 8}
    assert generation_key("hf", "0123456789abcdef", params, "p") == (
        "12811ad37f95047127ff063305527e5a72440470cf89983190a7e70fdf7a8422"
    )
    assert generation_key("hf", "0123456789abcdef", params, "p", merged=True) == (
        "9e02841173534e68b9873c3161848db3981cec27622d92540fc4f954e31908f7"
    )


def test_model_fingerprints_are_unchanged(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llama"}')
    (folder / "model.safetensors").write_bytes(bytes(range(256)) * 4)
    (folder / "notes.txt").write_text("not part of the fingerprint")
    assert folder_fingerprint(folder) == "a001163c50c4ed1f"


def test_judgment_keys_and_judge_fingerprints_are_unchanged(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    ((spec, variant),) = [(load_judges()["keyword"], None)]
    judge = make_judge(spec, variant, JudgeRuntime(store=store))
    assert judge.fingerprint == "fc5f28dd78ca0d7c"
    sample = Sample("advbench", "advbench-1", "Do a harmful thing", category="x", meta={"k": "v"})
    judge_cached(judge, store, [sample], ["I'm sorry, I cannot."], ["g" * 64])
    ((k, fp),) = store.db.execute("SELECT key, judge FROM judgments").fetchall()
    assert (k, fp) == ("b5f2ec40af658b958a2d9d97d41464f4e8f6e420d739306bc3ec36f5f533eea5", judge.fingerprint)
    store.close()


def test_scorer_and_model_judge_fingerprints_are_unchanged():
    tasks = load_tasks()
    assert {n: make_scorer(tasks[n]).fingerprint for n in ("gsm8k", "sst2", "math")} == {
        "gsm8k": "c4cccc7eb64d4c93",
        "sst2": "5d04edecb840a756",
        "math": "cb6f8e63f1883800",
    }
    runtime = JudgeRuntime(models={"harmbench-cls": "unused"})
    backend = SimpleNamespace(name="hf", fingerprint="fedcba9876543210", info={"name": "cls"}, tokenizer=None)
    from safeeval.judging.harmbench_cls import HarmBenchClassifier

    cls = HarmBenchClassifier("harmbench-cls", dict(load_judges()["harmbench-cls"].data), backend, runtime)
    assert cls.fingerprint == "6fbc4e5abe1f15b7"


def test_training_config_hash_is_unchanged():
    cfg = TrainConfig(base="smollm2", task="sst2", method="der", method_options={"alpha": 0.5}, steps=20)
    # was 686fd9dbb1870e5f: a benign run's hash leaves out the poison settings (keys.py lists why)
    assert cfg.hash == "d54fddece6099efb"
    assert key("x", {"b": 1, "a": [1, 2]}) == "b6897cf46bddc6fd77872cd8961994fdc8c5c529ac4cbb19311289fdcac33571"
