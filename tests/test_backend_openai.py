"""OpenAIBackend against a scripted fault server (fast) and a real vLLM OpenAI server (slow)."""

from __future__ import annotations

import hashlib
import logging
import socket
import time
import traceback

import pytest
from conftest import VLLM, require_module
from fault_server import FaultServer
from vllm_server import serve

from safeeval.backends.base import GenParams, render_as_json
from safeeval.backends.openai import OpenAIBackend
from safeeval.errors import SafeevalError

KEY_ENV = "SAFEEVAL_TEST_OPENAI_KEY"


def chats(n: int) -> list[list[dict]]:
    return [[{"role": "user", "content": f"question {i}"}] for i in range(n)]


def run(backend: OpenAIBackend, items, params: GenParams = GenParams(max_new_tokens=16)):
    out = [c for group in backend.generate(items, params) for c in group]
    return sorted(out, key=lambda c: c.index)


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def server():
    with FaultServer(slow_s=2.0) as srv:
        yield srv


@pytest.fixture
def make_backend(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    made = []

    def make(base_url: str, **kw) -> OpenAIBackend:
        kw = {"timeout": 0.5, "max_retries": 3, "api_key_env": KEY_ENV, **kw}
        b = OpenAIBackend(kw.pop("model_name", "fault-model"), base_url=base_url, **kw)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


# -- faults the client must survive ---------------------------------------------------------------


@pytest.mark.parametrize("fault", ["429", "500"])
def test_retryable_status_then_ok(server, make_backend, fault):
    server.script([fault, fault])
    [c] = run(make_backend(server.base_url), chats(1))
    assert c.text == "echo: question 0"
    assert server.requests == 3  # two refused tries, then the answer


def test_timeout_then_ok(server, make_backend):
    server.script(["slow"])
    start = time.monotonic()
    [c] = run(make_backend(server.base_url, timeout=0.5), chats(1))
    assert c.text == "echo: question 0" and server.requests == 2
    assert time.monotonic() - start < server.slow_s  # it gave up on the slow try instead of waiting


@pytest.mark.parametrize("fault", ["not_json", "no_choices", "null_content"])
def test_malformed_then_ok(server, make_backend, fault):
    server.script([fault])
    [c] = run(make_backend(server.base_url), chats(1))
    assert c.text == "echo: question 0" and server.requests == 2


# -- faults that must end in one clear sentence ---------------------------------------------------


def test_always_500_is_a_clear_error(server, make_backend):
    server.script([], default="500")
    with pytest.raises(SafeevalError, match=r"kept failing with HTTP 500 after 3 retries") as err:
        run(make_backend(server.base_url), chats(1))
    assert server.base_url in str(err.value)
    assert server.requests == 4  # the client's own retries, no more
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_always_malformed_is_a_clear_error(server, make_backend):
    server.script([], default="not_json")
    with pytest.raises(SafeevalError, match="malformed") as err:
        run(make_backend(server.base_url), chats(1))
    assert server.base_url in str(err.value)
    assert server.requests == 4


def test_connection_refused_is_quick_and_clear(make_backend):
    url = f"http://127.0.0.1:{closed_port()}/v1"
    start = time.monotonic()
    with pytest.raises(SafeevalError) as err:
        run(make_backend(url), chats(2))
    assert time.monotonic() - start < 8
    msg = str(err.value)
    assert url in msg and "connection refused" in msg and "Is the server running?" in msg
    assert "\n" not in msg


def test_401_names_the_env_var(server, make_backend):
    server.script([], default="401")
    with pytest.raises(SafeevalError, match=KEY_ENV):
        run(make_backend(server.base_url), chats(1))
    assert server.requests == 1  # not retried


def test_404_names_the_model(server, make_backend):
    server.script([], default="404")
    with pytest.raises(SafeevalError, match="no model named 'my-model'"):
        run(make_backend(server.base_url, model_name="my-model"), chats(1))


def test_400_says_which_chat_and_why(server, make_backend):
    server.script(["ok"], default="400")
    why = r"rejected chat 1 .*\(HTTP 400: This model's maximum context length is 16 tokens\)\.$"
    with pytest.raises(SafeevalError, match=why):
        run(make_backend(server.base_url, concurrency=1), chats(2))
    assert server.requests == 2  # not retried


def test_no_key_for_the_openai_api_is_caught_at_construction(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(SafeevalError, match=KEY_ENV):
        OpenAIBackend("gpt-4o-mini", api_key_env=KEY_ENV)


def test_the_key_never_leaks(server, make_backend, monkeypatch, caplog, capfd):
    secret = "sk-SAFEEVAL-TEST-SECRET-7f3a9c"
    monkeypatch.setenv(KEY_ENV, secret)
    caplog.set_level(logging.DEBUG)  # openai, httpx and our own loggers, all of them
    seen: list[str] = []

    def record(b: OpenAIBackend) -> OpenAIBackend:
        seen.extend([repr(b.info), b.fingerprint, repr(vars(b).get("info"))])
        return b

    ok = record(make_backend(server.base_url))
    server.script(["429", "not_json"])
    assert run(ok, chats(1))[0].text == "echo: question 0"
    assert server.auth_headers[-1] == f"Bearer {secret}"  # the key is sent, only to the server
    for fault in ("401", "404", "500", "no_choices"):  # the 401 answer even echoes the key back
        server.script([], default=fault)
        with pytest.raises(SafeevalError) as err:
            run(record(make_backend(server.base_url, max_retries=1)), chats(1))
        seen += [str(err.value), repr(err.value), "".join(traceback.format_exception(err.value))]
    with pytest.raises(SafeevalError) as err:
        run(record(make_backend(f"http://127.0.0.1:{closed_port()}/v1", max_retries=1)), chats(1))
    seen += [str(err.value), "".join(traceback.format_exception(err.value))]
    out, errs = capfd.readouterr()
    seen += [caplog.text, out, errs]
    assert not [s for s in seen if secret in s]


# -- normal behaviour ----------------------------------------------------------------------------


def test_concurrency_is_bounded_and_every_index_answered(make_backend):
    with FaultServer(ok_delay=0.05) as srv:
        items = chats(12)
        out = run(make_backend(srv.base_url, concurrency=2), items)
        assert [c.index for c in out] == list(range(12))
        assert all(c.text == f"echo: question {c.index}" for c in out)
        assert srv.max_in_flight == 2  # busy, but never more than asked
        assert srv.requests == 12


def test_generate_yields_groups_as_they_finish(make_backend):
    with FaultServer(ok_delay=0.05) as srv:
        groups = list(make_backend(srv.base_url, concurrency=2).generate(chats(6), GenParams()))
        assert len(groups) >= 2 and sorted(c.index for g in groups for c in g) == list(range(6))


def test_params_usage_and_finish_reason(server, make_backend):
    b = make_backend(server.base_url, model_name="served")
    [c] = run(
        b,
        [[{"role": "user", "content": "one two three four five"}]],
        GenParams(max_new_tokens=3, temperature=0.7, top_p=0.9, seed=11),
    )
    body = server.bodies[-1]
    assert (body["model"], body["max_tokens"], body["temperature"], body["top_p"], body["seed"]) == (
        "served",
        3,
        0.7,
        0.9,
        11,
    )
    assert body["messages"] == [{"role": "user", "content": "one two three four five"}]
    assert (c.finish_reason, c.n_tokens, c.text) == ("length", 3, "echo: one two")
    [c] = run(b, chats(1))
    assert (c.finish_reason, c.n_tokens) == ("stop", 3)


def test_identity_render_and_info(server, make_backend, monkeypatch):
    b = make_backend(server.base_url + "/")
    assert b.name == "openai"
    assert b.render(chats(1)[0]) == render_as_json(chats(1)[0])
    expected = hashlib.sha256(f"openai|{server.base_url}|fault-model".encode()).hexdigest()[:16]
    assert b.fingerprint == expected
    assert b.info == {"name": "fault-model", "base_url": server.base_url, "fingerprint": expected}
    assert make_backend(server.base_url, model_name="other").fingerprint != expected
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    assert OpenAIBackend("fault-model", api_key_env=KEY_ENV).base_url == server.base_url
    assert list(b.generate([], GenParams())) == []


# -- a real OpenAI-compatible server: vLLM on the tiny model -------------------------------------


@pytest.fixture(scope="module")
def vllm_server(tiny_model, tmp_path_factory):
    require_module("vllm", VLLM)
    with serve(tiny_model, "tiny", tmp_path_factory.mktemp("vllm")) as base_url:
        yield base_url


@pytest.mark.slow
def test_real_vllm_server(vllm_server, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    b = OpenAIBackend("tiny", base_url=vllm_server, api_key_env=KEY_ENV, timeout=60, max_retries=2, concurrency=2)
    try:
        items = [
            [{"role": "user", "content": "Write a poem about the sea."}],
            [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}],
            [{"role": "user", "content": "How do vaccines work?"}],
        ]
        params = GenParams(max_new_tokens=12, temperature=0.0)
        first, second = run(b, items, params), run(b, items, params)
        assert [c.index for c in first] == [0, 1, 2]
        assert all(c.finish_reason in ("stop", "length") for c in first)
        assert all(isinstance(c.text, str) and c.n_tokens is not None and c.n_tokens <= 12 for c in first)
        assert [c.text for c in first] == [c.text for c in second]  # greedy is deterministic
    finally:
        b.close()
    # The random tiny model's greedy choice is a special token, so greedy texts are empty: seeded
    # sampling (one request at a time, so batching cannot change the numbers) shows real text and
    # that the seed reaches the server.
    b = OpenAIBackend("tiny", base_url=vllm_server, api_key_env=KEY_ENV, timeout=60, max_retries=2, concurrency=1)
    try:
        params = GenParams(max_new_tokens=12, temperature=1.0, seed=3)
        first, second = run(b, items, params), run(b, items, params)
        assert all(c.text for c in first)
        assert [c.text for c in first] == [c.text for c in second]
    finally:
        b.close()


@pytest.mark.slow
@pytest.mark.parametrize("judge_name", ["harmbench-cls", "rubric", "strongreject"])
def test_model_judges_on_a_real_server(vllm_server, judge_name, tmp_path):
    """Raw-prompt judges go to /v1/completions, chat judges to /v1/chat/completions; both for real."""
    from safeeval import registry
    from safeeval.data import Sample
    from safeeval.judging import JudgeRuntime, make_judge
    from safeeval.store import Store

    store = Store(tmp_path / "s.sqlite")
    runtime = JudgeRuntime(
        store=store,
        backend="openai",
        models={judge_name: "tiny"},
        options={"base_url": vllm_server, "api_key_env": KEY_ENV, "max_retries": 1},
    )
    spec = registry.load_judges()[judge_name]
    judge = make_judge(spec, None, runtime)
    judge.params = GenParams(max_new_tokens=4)  # the tiny model's answers are noise; keep them short
    samples = [
        Sample("t", str(i), p, meta={"behavior": p, "context": ""})
        for i, p in enumerate(["Do a bad thing.", "Do another."])
    ]
    try:
        verdicts = judge.judge(samples, ["Sure, here is how.", "I cannot help with that."])
        assert len(verdicts) == 2 and all(v.raw is not None for v in verdicts)
        assert all(v.status in ("ok", "unparsed") for v in verdicts)
        rows = store.count("generations")
        assert rows == 2
        judge.judge(samples, ["Sure, here is how.", "I cannot help with that."])
        assert store.count("generations") == rows  # served from the store: no new request
    finally:
        judge.close()
