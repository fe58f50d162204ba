"""A local OpenAI-compatible stub server for tests and benchmarks (127.0.0.1, random port).

Behaviour is chosen by the URL path prefix: ``/ok`` answers ``reply`` after ``delay`` seconds; ``/slow``
waits ``slow_delay``; ``/error500`` always fails with HTTP 500; ``/flaky`` fails with 500 for the first
``flaky_failures`` requests then answers; ``/hang`` never answers within any sane timeout; ``/garbage``
returns non-JSON. Every request's Authorization header is recorded (to check keys are sent, not logged).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["StubServer"]


class StubServer:
    """Context manager running the stub in a thread; ``url(mode)`` gives the base URL for a mode."""

    def __init__(self, reply: str = "0:42", delay: float = 0.0, slow_delay: float = 3.0, flaky_failures: int = 2,
                 hang_seconds: float = 30.0):
        self.reply, self.delay, self.slow_delay, self.hang_seconds = reply, delay, slow_delay, hang_seconds
        self.flaky_left = flaky_failures
        self.requests: list[dict] = []
        self.auth: list[str | None] = []
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):  # noqa: N802 (http.server API)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                mode = self.path.strip("/").split("/")[0]
                with stub._lock:
                    stub.auth.append(self.headers.get("Authorization"))
                    try:
                        stub.requests.append(json.loads(body))
                    except ValueError:
                        stub.requests.append({})
                    flaky = mode == "flaky" and stub.flaky_left > 0
                    if flaky:
                        stub.flaky_left -= 1
                if mode == "error500" or flaky:
                    return self._send(500, b'{"error": "boom"}')
                if mode == "hang":
                    time.sleep(stub.hang_seconds)
                if mode == "garbage":
                    return self._send(200, b"<html>not json</html>")
                time.sleep(stub.slow_delay if mode == "slow" else stub.delay)
                out = {"id": "x", "object": "chat.completion",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": stub.reply}}]}
                self._send(200, json.dumps(out).encode())

            def _send(self, code: int, data: bytes) -> None:
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout); nothing to answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, mode: str = "ok") -> str:
        """Base URL (``…/v1``) for a behaviour."""
        return f"http://127.0.0.1:{self.server.server_address[1]}/{mode}/v1"

    def __enter__(self) -> "StubServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
