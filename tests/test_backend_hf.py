"""The transformers backend on a tiny random model built in a fixture."""

from __future__ import annotations

import pytest

from safeeval.backends import GenParams, make_backend
from safeeval.backends.hf import batches
from safeeval.errors import SafeevalError

CHATS = [
    [{"role": "user", "content": text}]
    for text in [
        "Write a poem about the sea.",
        "Hi",
        "Explain how vaccines train the immune system to recognise a virus.",
        "The capital of France?",
        "Sorry?",
    ]
]


def _texts(backend, chats, params):
    got = {}
    for group in backend.generate(chats, params):
        for c in group:
            got[c.index] = c
    return got


def test_greedy_generation_is_batched_and_independent_of_batching(tiny_model):
    params = GenParams(max_new_tokens=12)
    one = make_backend("hf", str(tiny_model), dtype="float32", batch_size=1)
    many = make_backend("hf", str(tiny_model), dtype="float32", batch_size=4)
    a, b = _texts(one, CHATS, params), _texts(many, CHATS, params)
    assert sorted(a) == list(range(len(CHATS)))
    # Left padding must not change what a prompt gets: batched output equals one-at-a-time output.
    assert [a[i].text for i in range(len(CHATS))] == [b[i].text for i in range(len(CHATS))]
    assert all(c.n_tokens <= 12 and c.finish_reason in ("stop", "length") for c in a.values())
    assert one.fingerprint == many.fingerprint


def test_groups_arrive_per_batch_longest_first(tiny_model):
    chats = [[{"role": "user", "content": "word " * n}] for n in (10, 12, 9, 11, 8)]  # lengths within 2x
    backend = make_backend("hf", str(tiny_model), batch_size=2)
    groups = list(backend.generate(chats, GenParams(max_new_tokens=2)))
    assert [[c.index for c in g] for g in groups] == [[1, 3], [0, 2], [4]]  # the longest prompts go first


def test_a_long_prompt_does_not_pad_a_batch_of_short_ones(tiny_model):
    chats = [[{"role": "user", "content": "word " * n}] for n in (3, 200, 4, 90, 5)]
    backend = make_backend("hf", str(tiny_model), dtype="float32", batch_size=8)
    groups = list(backend.generate(chats, GenParams(max_new_tokens=3)))
    assert [[c.index for c in g] for g in groups] == [[1], [3], [4, 2, 0]]
    alone = make_backend("hf", str(tiny_model), dtype="float32", batch_size=1)
    assert _texts(backend, chats, GenParams(max_new_tokens=3)) == _texts(alone, chats, GenParams(max_new_tokens=3))


def test_batches_end_at_the_size_or_where_padding_would_double_a_prompt():
    lengths = [100, 60, 51, 50, 49, 30, 25, 24]
    assert list(batches(list(range(8)), lengths, 3)) == [[0, 1, 2], [3, 4, 5], [6, 7]]
    assert list(batches(list(range(8)), lengths, 8)) == [[0, 1, 2, 3], [4, 5, 6], [7]]
    assert list(batches([], [], 4)) == []


def test_render_uses_the_models_chat_template(tiny_model):
    backend = make_backend("hf", str(tiny_model))
    assert backend.render(CHATS[1]) == "<|user|>Hi<|end|><|assistant|>"


def test_sampling_is_seeded(tiny_model):
    backend = make_backend("hf", str(tiny_model), dtype="float32")
    params = GenParams(max_new_tokens=10, temperature=1.0, seed=3)
    assert _texts(backend, CHATS[:2], params)[0].text == _texts(backend, CHATS[:2], params)[0].text


def test_adapter_changes_output_and_fingerprint(tiny_model, tiny_adapter):
    params = GenParams(max_new_tokens=8)
    base = make_backend("hf", str(tiny_model), dtype="float32")
    tuned = make_backend("hf", str(tiny_model), dtype="float32", adapter=str(tiny_adapter))
    assert base.fingerprint != tuned.fingerprint
    assert [c.text for c in _texts(base, CHATS, params).values()] != [
        c.text for c in _texts(tuned, CHATS, params).values()
    ]


def test_dtype_is_part_of_the_fingerprint(tiny_model):
    assert (
        make_backend("hf", str(tiny_model), dtype="float32").fingerprint
        != make_backend("hf", str(tiny_model), dtype="bfloat16").fingerprint
    )


def test_model_without_chat_template_is_an_error_unless_one_is_given(tiny_model_no_template, tmp_path):
    with pytest.raises(SafeevalError, match="no chat template; pass one with --chat-template"):
        make_backend("hf", str(tiny_model_no_template))
    template = tmp_path / "t.jinja"
    template.write_text("{% for m in messages %}[{{ m['content'] }}]{% endfor %}")
    backend = make_backend("hf", str(tiny_model_no_template), chat_template=str(template))
    assert backend.render(CHATS[1]) == "[Hi]"


def test_missing_model_and_adapter_are_clear_errors(tiny_model, tmp_path):
    with pytest.raises(SafeevalError, match="does not exist"):
        make_backend("hf", str(tmp_path / "nowhere"))
    with pytest.raises(SafeevalError, match="Adapter folder .* does not exist"):
        make_backend("hf", str(tiny_model), adapter=str(tmp_path / "no-adapter"))
    with pytest.raises(SafeevalError, match="Unknown backend 'tgi'. Valid backends: hf, vllm, openai"):
        make_backend("tgi", str(tiny_model))


def test_hub_id_offline_is_a_clear_error():
    with pytest.raises(SafeevalError, match="could not be fetched from the Hugging Face Hub"):
        make_backend("hf", "no-such-org/no-such-model")
