"""Bad input to the inference Space (issue 17): oversize bodies are refused before they are read,
text no tokenizer or database can take is a 422 naming the field, and no answer names the
feedback database's host, user or name."""
from __future__ import annotations

import socket

import httpx
import pytest

from feedback.store import FeedbackStore
from inference_space.app import create_app
from inference_space.settings import load_settings
from tests.fixtures.space import serve, wait_for_status

LIMIT = 10_000


@pytest.fixture
def small_limit_space(space_env, space_hub, publish_space_version, monkeypatch):
    """A Space with MAX_REQUEST_BYTES=10000, serving; yields its base URL."""
    monkeypatch.setenv("MAX_REQUEST_BYTES", str(LIMIT))
    publish_space_version(space_hub, "v20260101_000000")
    with serve(create_app(load_settings())) as url:
        with httpx.Client(base_url=url, timeout=30) as client:
            assert wait_for_status(client)["status"] == "ok"
        yield url


def raw_request(url: str, head: str, body_parts: list[bytes]) -> str:
    """Send a request by hand (headers, then body parts, no more) and read the answer. A server
    that waits for the rest of the body never answers: the read times out."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=20) as connection:
        connection.sendall(head.encode())
        for part in body_parts:
            connection.sendall(part)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = connection.recv(65536)
            if not chunk:
                break
            answer += chunk
    return answer.decode(errors="replace")


def test_declared_oversize_body_is_413_before_it_is_sent(small_limit_space):
    head = (f"POST /predict/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {50 * 1024 * 1024}\r\n\r\n")
    answer = raw_request(small_limit_space, head, [])  # not one byte of the 50 MB follows
    assert answer.startswith("HTTP/1.1 413") and f"MAX_REQUEST_BYTES={LIMIT}" in answer


def test_chunked_body_is_413_once_it_passes_the_limit(small_limit_space):
    head = "POST /predict/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b'{"texts": ["' + b"a" * 4000
    parts = [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * 3  # 12 kB, and the body never ends
    answer = raw_request(small_limit_space, head, parts)
    assert answer.startswith("HTTP/1.1 413") and "MAX_REQUEST_BYTES" in answer


def test_body_under_the_limit_is_served(small_limit_space):
    texts = ["sadak bigreko chha"] * 64
    response = httpx.post(f"{small_limit_space}/predict/batch", json={"texts": texts}, timeout=60)
    assert response.status_code == 200 and len(response.json()["predictions"]) == 64


@pytest.mark.parametrize("path,body,field", [
    ("/predict", '{"text": "pani \\ud800 aayena"}', "text"),
    ("/predict/batch", '{"texts": ["pani aayena", "bijuli \\udc00"]}', "texts.1"),
    ("/feedback", '{"text": "pani \\ud83d aayena", "predicted_label": "NORMAL"}', "text"),
    ("/feedback", '{"text": "pani aayena", "predicted_label": "NORMAL", "reporter": "w\\udfff"}', "reporter"),
    ("/feedback", '{"text": "pani \\u0000 aayena", "predicted_label": "NORMAL"}', "text"),
    ("/feedback", '{"text": "pani aayena", "predicted_label": "NORMAL", "complaint_id": "C\\u0000"}',
     "complaint_id"),
])
def test_lone_surrogate_or_nul_is_422_naming_the_field(small_limit_space, path, body, field):
    response = httpx.post(f"{small_limit_space}{path}", content=body.encode(),
                          headers={"content-type": "application/json"}, timeout=30)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail.startswith(f"{field}: has a ") and ("surrogate" in detail or "NUL" in detail)
    assert FeedbackStore(load_settings().feedback_db_url).list_pending() == []


def test_nul_in_feedback_is_422_on_every_database(space_env, space_hub, publish_space_version, feedback_store,
                                                   monkeypatch):
    """On PostgreSQL a NUL used to reach the database: 503, naming its user, host, port and name."""
    monkeypatch.setenv("FEEDBACK_DB_URL", feedback_store.url)
    publish_space_version(space_hub, "v20260101_000000")
    with serve(create_app(load_settings())) as url:
        response = httpx.post(f"{url}/feedback", json={"text": "pani\x00 aayena", "predicted_label": "NORMAL"},
                              timeout=30)
    assert response.status_code == 422 and response.json()["detail"].startswith("text: has a NUL")
    assert "127.0.0.1" not in response.text and feedback_store.pending_count() == 0
