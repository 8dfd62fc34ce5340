"""Any OpenAI-compatible chat endpoint (OpenAI, vLLM's server, TGI, llama.cpp, a proxy...).

Retries and backoff are the official client's own (429, 408, 409, 5xx, timeouts and connection
errors, honouring Retry-After / retry-after-ms). The only retry added here is for a 200 answer
whose body is unusable (not JSON, no choices, no content), which the client does not retry.
Requests run on one event loop in a background thread, at most `concurrency` at a time;
generate() yields completions as they finish.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

from ..errors import SafeevalError
from ..keys import endpoint_fingerprint
from .base import Chat, Completion, GenParams, Prompt, render_as_json

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
MALFORMED_RETRIES = 3  # extra tries after a 200 answer with an unusable body
MALFORMED_BACKOFF = 0.2  # seconds, doubled after each malformed answer


class _Malformed(Exception):
    """A 200 answer whose body is not a usable chat completion."""


def _display_url(url: str) -> str:
    """The URL without user:password or query string, safe to record and print."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _connection_reason(err: BaseException) -> str:
    """Why a connection failed, in a few words, from the exception chain (never a header or key)."""
    seen, e = set(), err
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, ConnectionRefusedError):
            return "connection refused"
        if isinstance(e, socket.gaierror):
            return "host name not found"
        if isinstance(e, ssl.SSLError):
            return "TLS handshake failed"
        if isinstance(e, ConnectionResetError):
            return "connection reset"
        text = str(e).lower()
        if "refused" in text:
            return "connection refused"
        if "name or service not known" in text or "nodename nor servname" in text or "name resolution" in text:
            return "host name not found"
        e = e.__cause__ or e.__context__
    return "connection failed"


class OpenAIBackend:
    name = "openai"
    capabilities = frozenset({"remote", "raw_prompts"})

    def __init__(
        self,
        model_name: str,
        *,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 8,
        timeout: float = 60,
        max_retries: int = 5,
    ):
        given = base_url or os.environ.get("OPENAI_BASE_URL")
        self.base_url = (given or DEFAULT_BASE_URL).rstrip("/")
        self.model_name = model_name
        self.api_key_env = api_key_env
        self.concurrency = max(1, int(concurrency))
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        key = os.environ.get(api_key_env) or None
        if key is None and not given:
            raise SafeevalError(
                f"The OpenAI API needs a key: set the environment variable {api_key_env} "
                "(or give base_url for a local server that needs none)."
            )
        self._key_set = key is not None
        self._api_key = key or "EMPTY"  # local servers ignore it; never recorded or printed
        self._url = _display_url(self.base_url)
        self.fingerprint = endpoint_fingerprint(self.base_url, model_name)
        self.info = {"name": model_name, "base_url": self._url, "fingerprint": self.fingerprint}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client = None

    # -- Backend protocol ------------------------------------------------------------------------

    def load(self) -> None:
        self._ensure_loop()

    def render(self, chat: Prompt) -> str:
        return render_as_json(chat)

    def generate(self, chats: list[Prompt], params: GenParams) -> Iterator[list[Completion]]:
        if not chats:
            return
        loop = self._ensure_loop()
        results: queue.Queue = queue.Queue()
        future = asyncio.run_coroutine_threadsafe(self._run_all(chats, params, results), loop)
        remaining = len(chats)
        try:
            while remaining:
                try:
                    item = results.get(timeout=0.5)
                except queue.Empty:
                    if future.done() and results.empty():
                        exc = future.exception()
                        raise SafeevalError(
                            f"Generation on {self._url} stopped unexpectedly: "
                            f"{type(exc).__name__ if exc else 'no result'}."
                        ) from None
                    continue
                group = [item]
                while True:  # whatever else has finished meanwhile goes into the same group
                    try:
                        group.append(results.get_nowait())
                    except queue.Empty:
                        break
                for x in group:
                    if isinstance(x, BaseException):
                        raise x
                remaining -= len(group)
                yield group
        finally:
            future.cancel()  # stops outstanding requests when the caller breaks off or an error is raised

    def close(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None:
            return
        if self._client is not None:
            try:
                asyncio.run_coroutine_threadsafe(self._client.close(), loop).result(timeout=10)
            except Exception:  # closing must not mask the caller's own error
                pass
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=10)
        if not loop.is_running():
            loop.close()
        self._loop = self._thread = self._client = None

    # -- internals -------------------------------------------------------------------------------

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="safeeval-openai", daemon=True)
            thread.start()
            self._loop, self._thread = loop, thread
            asyncio.run_coroutine_threadsafe(self._make_client(), loop).result()
        return self._loop

    async def _make_client(self) -> None:
        from openai import AsyncOpenAI

        self._client = AsyncOpenAI(
            api_key=self._api_key, base_url=self.base_url, timeout=self.timeout, max_retries=self.max_retries
        )

    async def _run_all(self, chats: list[Chat], params: GenParams, results: queue.Queue) -> None:
        semaphore = asyncio.Semaphore(self.concurrency)

        async def one(index: int, chat: Chat) -> None:
            async with semaphore:
                try:
                    results.put(await self._complete(index, chat, params))
                except asyncio.CancelledError:
                    raise
                except SafeevalError as e:
                    results.put(e)
                except Exception as e:  # an unexpected failure still ends generate() with one sentence
                    results.put(SafeevalError(f"Request {index} to {self._url} failed: {type(e).__name__}."))

        await asyncio.gather(*(one(i, c) for i, c in enumerate(chats)))

    async def _complete(self, index: int, chat: Prompt, params: GenParams) -> Completion:
        import openai

        request = {
            "model": self.model_name,
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "seed": params.seed,
        }
        # A raw prompt (already in the model's own format) goes to /completions, a chat to /chat/completions.
        api = self._client.completions if isinstance(chat, str) else self._client.chat.completions
        request["prompt" if isinstance(chat, str) else "messages"] = chat
        for attempt in range(MALFORMED_RETRIES + 1):
            try:
                raw = await api.with_raw_response.create(**request)
                return self._parse(index, raw.text)
            except _Malformed as e:
                problem = str(e)
                log.warning(
                    "Malformed answer from %s (%s); try %d of %d.",
                    self._url,
                    problem,
                    attempt + 1,
                    MALFORMED_RETRIES + 1,
                )
                if attempt < MALFORMED_RETRIES:
                    await asyncio.sleep(MALFORMED_BACKOFF * 2**attempt)
            except openai.APIError as e:
                raise self._explain(e, index) from None
        raise SafeevalError(
            f"The endpoint {self._url} sent {MALFORMED_RETRIES + 1} malformed answers in a row "
            f"({problem}); is it an OpenAI-compatible chat completions endpoint?"
        )

    def _parse(self, index: int, text: str) -> Completion:
        try:
            data = json.loads(text)
        except ValueError:
            raise _Malformed("body is not JSON") from None
        choices = data.get("choices") if isinstance(data, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise _Malformed("no choices")
        choice = choices[0]
        message = choice.get("message")
        content = message.get("content") if isinstance(message, dict) else choice.get("text")
        if content is None and isinstance(message, dict) and isinstance(message.get("refusal"), str):
            content = message["refusal"]  # OpenAI's structured refusal: the model's answer all the same
        if not isinstance(content, str):
            raise _Malformed("no message content")
        usage = data.get("usage")
        n_tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
        return Completion(index, content, choice.get("finish_reason"), n_tokens if isinstance(n_tokens, int) else None)

    def _redact(self, text: str) -> str:
        if self._key_set and self._api_key:
            text = text.replace(self._api_key, "***")
        return text

    def _explain(self, e: Exception, index: int) -> SafeevalError:
        """One sentence that says what went wrong and what to do; never includes the key."""
        import openai

        url = self._url
        retries = f"{self.max_retries} retr{'y' if self.max_retries == 1 else 'ies'}"
        if isinstance(e, openai.APITimeoutError):
            return SafeevalError(
                f"The endpoint {url} did not answer after {retries} (each try timed out "
                f"after {self.timeout:g} s). Is the server running, or does it need a longer timeout?"
            )
        if isinstance(e, openai.APIConnectionError):
            return SafeevalError(
                f"The endpoint {url} did not answer after {retries} ({_connection_reason(e)}). Is the server running?"
            )
        if isinstance(e, (openai.AuthenticationError, openai.PermissionDeniedError)):
            status = getattr(e, "status_code", "401/403")
            if self._key_set:
                return SafeevalError(
                    f"The endpoint {url} refused the API key from the environment variable "
                    f"{self.api_key_env} (HTTP {status}); set {self.api_key_env} to a valid key."
                )
            return SafeevalError(
                f"The endpoint {url} needs an API key (HTTP {status}); set the environment variable {self.api_key_env}."
            )
        if isinstance(e, openai.NotFoundError):
            return SafeevalError(
                f"The endpoint {url} has no model named '{self.model_name}' (HTTP 404); check the "
                f"model name (GET {url}/models lists those served) and that base_url ends in /v1."
            )
        if isinstance(e, openai.RateLimitError):
            return SafeevalError(
                f"The endpoint {url} kept answering 429 Too Many Requests after {retries}; "
                "lower concurrency or try again later."
            )
        if isinstance(e, openai.APIStatusError):
            status = e.status_code
            if status >= 500:
                return SafeevalError(
                    f"The endpoint {url} kept failing with HTTP {status} after {retries}. Is the server healthy?"
                )
            detail = re.sub(r"^Error code: \d+ - ", "", str(getattr(e, "message", "") or ""))
            detail = self._redact(detail)[:300].rstrip(".")
            return SafeevalError(
                f"The endpoint {url} rejected chat {index} for model '{self.model_name}' (HTTP {status}: {detail})."
            )
        return SafeevalError(f"The request to {url} failed ({type(e).__name__}).")
