"""The status page a Space shows while the job runs: the current step, then the result."""
from pathlib import Path

import httpx

from localhub.spaces import free_port
from status_page import start_status_page
from summary import RunResult


def test_status_page_follows_the_run(tmp_path: Path):
    result = RunResult(label="urgency", run_dir=tmp_path)
    port = free_port()
    server = start_status_page(port, result.status, host="127.0.0.1")
    try:
        result.enter("train")
        running = httpx.get(f"http://127.0.0.1:{port}/status", timeout=10).json()
        assert running["step"] == "train" and running["outcome"] == "running"

        result.step, result.outcome, result.seconds, result.version = "deploy", "promoted", 12.0, "v20260101_000000"
        result.error = "<script>x</script>"
        done = httpx.get(f"http://127.0.0.1:{port}/status", timeout=10).json()
        assert done["outcome"] == "promoted" and done["version"] == "v20260101_000000"
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
        assert page.headers["content-type"].startswith("text/html")
        assert "v20260101_000000" in page.text and "<script>" not in page.text  # values are escaped
    finally:
        server.shutdown()
        server.server_close()
