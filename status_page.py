"""A small status page on the Space's port while the job runs: current step, progress, last result.

Spaces mark a Docker Space unhealthy when nothing listens on its port, and people look at the
Space page to see what a run is doing; this answers both with the standard library alone.
"""
from __future__ import annotations

import html
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable


def start_status_page(port: int, status: Callable[[], dict], host: str = "0.0.0.0") -> ThreadingHTTPServer:
    """Serve GET / (HTML, refreshes itself) and GET /status (JSON) in a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = status()
            if self.path.startswith("/status"):
                body, kind = json.dumps(data, default=str).encode(), "application/json"
            else:
                rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                               for k, v in data.items())
                body = (f"<!doctype html><meta http-equiv='refresh' content='5'><title>retrainspace</title>"
                        f"<h1>retrainspace run</h1><table>{rows}</table>").encode()
                kind = "text/html; charset=utf-8"
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:  # keep the job's log readable
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
