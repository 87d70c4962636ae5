"""A real chat-completions server on loopback, for tests: answers from a script, records every request.

It speaks the OpenAI protocol over real HTTP (``http.server`` in a thread):
JSON answers, error bodies with status codes and headers, and server-sent
event streams. Tests queue replies with ``reply``/``stream``; when the queue
is empty it answers ``default`` (an "ok" completion with usage).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def completion(text: str, usage: tuple[int, int] | None = (11, 7)) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": "test-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
    }
    if usage is not None:
        body["usage"] = {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)}
    return body


def error_body(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error"}}


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # a JSON-able object, or bytes sent as they are
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    chunks: list[str | dict[str, Any]] | None = None  # stream these as SSE: text, or a raw delta (tool calls)
    chunk_delay_s: float = 0.0
    usage: tuple[int, int] | None = None  # for a stream: sent in the last chunk
    echo_auth: bool = False  # put the request's Authorization header into the error message
    end: str = (
        "done"  # how a stream ends: "done" ([DONE]), "break" (the connection closes mid-way), "error" (an error event)
    )


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    json: Any


class ChatServer:
    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.replies: deque[Reply] = deque()
        self.default = Reply(body=completion("ok"))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> ChatServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reply(self, status: int = 200, body: Any = None, **kwargs: Any) -> None:
        self.replies.append(Reply(status=status, body=body, **kwargs))

    def answer(self, text: str, usage: tuple[int, int] | None = (11, 7)) -> None:
        self.reply(body=completion(text, usage))

    def stream(
        self,
        chunks: list[str | dict[str, Any]],
        chunk_delay_s: float = 0.0,
        usage: tuple[int, int] | None = (5, 9),
        end: str = "done",
    ) -> None:
        self.replies.append(Reply(chunks=chunks, chunk_delay_s=chunk_delay_s, usage=usage, end=end))

    def _next(self) -> Reply:
        try:
            return self.replies.popleft()
        except IndexError:
            return self.default

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    parsed = json.loads(raw)
                except ValueError:
                    parsed = None
                server.requests.append(Request(self.path, {k.lower(): v for k, v in self.headers.items()}, parsed))
                reply = server._next()
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                if reply.chunks is not None:
                    self._stream(reply)
                    return
                body = reply.body
                if reply.echo_auth:
                    body = error_body(f"bad key: {self.headers.get('Authorization')}")
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _stream(self, reply: Reply) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                try:
                    for piece in reply.chunks or []:
                        delta = piece if isinstance(piece, dict) else {"content": piece}
                        chunk = {"choices": [{"index": 0, "delta": delta}]}
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                        self.wfile.flush()
                        if reply.chunk_delay_s:
                            time.sleep(reply.chunk_delay_s)
                    if reply.end == "break":  # the server goes away mid-answer
                        self.wfile.flush()
                        return
                    if reply.end == "error":
                        error = json.dumps(error_body("the model is overloaded"))
                        self.wfile.write(f"event: error\ndata: {error}\n\n".encode())
                        self.wfile.flush()
                        return
                    if reply.usage is not None:
                        last = {
                            "choices": [],
                            "usage": {"prompt_tokens": reply.usage[0], "completion_tokens": reply.usage[1]},
                        }
                        self.wfile.write(f"data: {json.dumps(last)}\n\n".encode())
                    self.wfile.write(b"data: [DONE]\n\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass

        return Handler
