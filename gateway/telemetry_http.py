"""`/metrics`, `/healthz` (the worker loop is alive) and `/readyz` (connected to the broker)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from gateway.internal_events import Events


class Probed(Protocol):
    events: Events

    def healthy(self) -> bool: ...

    def is_ready(self) -> bool: ...


def serve_http(host: str, port: int, target: Probed) -> Callable[[], None]:
    registry: CollectorRegistry = target.events.registry

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                ok = target.healthy()
                self._send(200 if ok else 503, b"ok\n" if ok else b"worker stopped\n")
            elif path == "/readyz":
                ok = target.is_ready()
                self._send(200 if ok else 503, b"ready\n" if ok else b"not connected\n")
            else:
                self._send(404, b"not found\n")

        def _send(self, code: int, body: bytes, ctype: str = "text/plain") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # scrapes every few seconds would drown the log

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="gateway-http", daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return stop
