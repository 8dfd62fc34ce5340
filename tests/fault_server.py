"""A scripted OpenAI-compatible chat endpoint on 127.0.0.1 for testing how clients survive faults.

    with FaultServer() as srv:
        srv.script(["429", "500"], default="ok")   # 1st request 429, 2nd 500, then every request succeeds
        ... OpenAIBackend("m", base_url=srv.base_url) ...
        assert srv.requests == 3

Actions (one consumed per POST /v1/chat/completions, then `default` for every later request):
  ok           200, a valid chat.completion whose text is "echo: <last message content>"
  429          429 with Retry-After: 0 and retry-after-ms: <retry_after_ms>. The openai client treats
               Retry-After: 0 as "no delay given" and falls back to its 0.5 s+ exponential backoff;
               retry-after-ms (which it reads first) is what makes its retries fast here.
  500          500 with the same headers (so clients retry at once)
  slow         sleep `slow_s` seconds (longer than the client's timeout), then answer like ok
  not_json     200 with a body that is not JSON
  no_choices   200 with JSON that has no "choices"
  null_content 200 with a choice whose message content is null
  400          400 context length exceeded (not retryable)
  401          401 invalid_api_key, echoing the key it received (as some real endpoints do)
  404          404 model_not_found
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ACTIONS = ("ok", "429", "500", "slow", "not_json", "no_choices", "null_content", "400", "401", "404")


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:  # a client hanging up is expected here
        pass


class FaultServer:
    def __init__(self, *, ok_delay: float = 0.0, slow_s: float = 2.0, retry_after_ms: int = 10):
        self.ok_delay = ok_delay  # every successful answer waits this long (lets requests overlap)
        self.slow_s = slow_s
        self.retry_after_ms = retry_after_ms
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._actions: deque[str] = deque()
        self._default = "ok"
        self.requests = 0  # POST /v1/chat/completions received
        self.in_flight = 0
        self.max_in_flight = 0
        self.bodies: list[dict] = []  # parsed request bodies, in arrival order
        self.auth_headers: list[str | None] = []
        self._httpd = _QuietServer(("127.0.0.1", 0), _handler_for(self))
        self.port = self._httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def script(self, actions: list[str], default: str = "ok") -> None:
        for a in [*actions, default]:
            if a not in ACTIONS:
                raise ValueError(f"unknown action {a!r}")
        with self._lock:
            self._actions = deque(actions)
            self._default = default

    def reset_counts(self) -> None:
        with self._lock:
            self.requests = self.max_in_flight = 0
            self.bodies.clear()
            self.auth_headers.clear()

    def _next_action(self, body: dict, auth: str | None) -> str:
        with self._lock:
            self.requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.bodies.append(body)
            self.auth_headers.append(auth)
            return self._actions.popleft() if self._actions else self._default

    def _done(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def start(self) -> FaultServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # wakes handlers sleeping in "slow"
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def completion_body(body: dict, text: str | None) -> dict:
    messages = body.get("messages") or [{}]
    if text is None:
        text = "echo: " + str(messages[-1].get("content", ""))
    prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
    n = len(text.split())
    limit = body.get("max_tokens") or body.get("max_completion_tokens")
    finish = "stop"
    if limit is not None and n > limit:
        text, n, finish = " ".join(text.split()[:limit]), limit, "length"
    return {
        "id": "chatcmpl-fault",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "unknown"),
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish, "logprobs": None}
        ],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": n, "total_tokens": prompt_tokens + n},
    }


def _handler_for(server: FaultServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep test output clean
            pass

        def _send(
            self, status: int, payload: bytes, content_type: str = "application/json", headers: dict | None = None
        ) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)
            except OSError:  # the client gave up (timeout) and closed the connection
                pass

        def _error(
            self, status: int, message: str, type_: str, code: str | None = None, headers: dict | None = None
        ) -> None:
            err = {"error": {"message": message, "type": type_, "param": None, "code": code}}
            self._send(status, json.dumps(err).encode(), headers=headers)

        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/v1/models":
                self._send(
                    200,
                    json.dumps(
                        {
                            "object": "list",
                            "data": [{"id": "fault-model", "object": "model", "created": 0, "owned_by": "test"}],
                        }
                    ).encode(),
                )
            else:
                self._error(404, "not found", "invalid_request_error")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._error(404, f"no route {self.path}", "invalid_request_error")
                return
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = {}
            action = server._next_action(body, self.headers.get("Authorization"))
            try:
                self._act(action, body)
            finally:
                server._done()

        def _act(self, action: str, body: dict) -> None:
            retry = {"Retry-After": "0", "retry-after-ms": str(server.retry_after_ms)}
            if action in ("ok", "slow"):
                delay = server.slow_s if action == "slow" else server.ok_delay
                if delay and server._stop.wait(delay):
                    return
                self._send(200, json.dumps(completion_body(body, None)).encode())
            elif action == "429":
                self._error(
                    429, "Rate limit reached, slow down.", "rate_limit_error", "rate_limit_exceeded", headers=retry
                )
            elif action == "500":
                self._error(500, "Internal server error.", "server_error", headers=retry)
            elif action == "not_json":
                self._send(200, b"<html><body>502 Bad Gateway (proxy)</body></html>", "application/json")
            elif action == "no_choices":
                self._send(
                    200,
                    json.dumps(
                        {"id": "x", "object": "chat.completion", "created": 0, "model": body.get("model", "")}
                    ).encode(),
                )
            elif action == "null_content":
                self._send(
                    200,
                    json.dumps(
                        completion_body(body, "x")
                        | {
                            "choices": [
                                {"index": 0, "message": {"role": "assistant", "content": None}, "finish_reason": "stop"}
                            ]
                        }
                    ).encode(),
                )
            elif action == "400":
                self._error(
                    400,
                    "This model's maximum context length is 16 tokens.",
                    "invalid_request_error",
                    "context_length_exceeded",
                )
            elif action == "401":
                # Echoes the key it got, as some real endpoints do (partly masked): the worst case for leaks.
                key = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                self._error(401, f"Incorrect API key provided: {key}.", "invalid_request_error", "invalid_api_key")
            elif action == "404":
                self._error(
                    404, f"The model `{body.get('model')}` does not exist.", "invalid_request_error", "model_not_found"
                )

    return Handler
