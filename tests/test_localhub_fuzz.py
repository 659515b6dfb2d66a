"""Random requests against every hub route: never a 500, never a file outside the data dir
(FUZZ_EXAMPLES=2500 for a longer hunt; 400 by default, ~20 s).

hypothesis runs as a library here (pytest.ini disables its pytest plugin, see there). The app
runs in-process through starlette's TestClient with its real lifespan and a real data dir.
"""
from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from localhub.server import create_app

HUB_URL = "http://127.0.0.1:18999"  # the app's own origin; nothing listens there
MODEL, DATASET, SPACE = "fuzz/model", "fuzz/data", "fuzz/space"
OID = "a" * 64
# every route, with {repo}/{rev}/{path}/{oid}/{seg} filled by the strategies below; the local-app
# binding is left out: its body is a command the hub runs by design
ROUTES = [
    ("GET", "/api/localhub/health"), ("GET", "/api/whoami-v2"), ("POST", "/api/validate-yaml"),
    ("POST", "/api/repos/create"), ("DELETE", "/api/repos/delete"), ("POST", "/api/repos/delete"),
    ("GET", "/api/{plural}"), ("GET", "/api/{plural}/{repo}"), ("GET", "/api/{plural}/{repo}/revision/{rev}"),
    ("GET", "/api/{plural}/{repo}/tree/{rev}/{path}"), ("POST", "/api/{plural}/{repo}/paths-info/{rev}"),
    ("GET", "/api/{plural}/{repo}/refs"), ("GET", "/api/{plural}/{repo}/commits/{rev}"),
    ("POST", "/api/{plural}/{repo}/branch/{seg}"), ("DELETE", "/api/{plural}/{repo}/branch/{seg}"),
    ("POST", "/api/{plural}/{repo}/tag/{rev}"), ("DELETE", "/api/{plural}/{repo}/tag/{seg}"),
    ("POST", "/api/{plural}/{repo}/preupload/{rev}"), ("POST", "/api/{plural}/{repo}/commit/{rev}"),
    ("POST", "/{prefix}{repo}.git/info/lfs/objects/batch"), ("PUT", "/api/localhub/lfs/{plural}/{repo}/{oid}"),
    ("GET", "/{prefix}{repo}/resolve/{rev}/{path}"), ("HEAD", "/{prefix}{repo}/resolve/{rev}/{path}"),
    ("GET", "/api/spaces/{space}/runtime"), ("POST", "/api/spaces/{space}/restart"),
    ("POST", "/api/spaces/{space}/pause"), ("GET", "/api/spaces/{space}/variables"),
    ("POST", "/api/spaces/{space}/variables"), ("DELETE", "/api/spaces/{space}/variables"),
    ("GET", "/api/spaces/{space}/secrets"), ("POST", "/api/spaces/{space}/secrets"),
    ("DELETE", "/api/spaces/{space}/secrets"), ("GET", "/api/spaces/{space}/local-app/logs"),
    ("GET", "/"), ("GET", "/localhub/sections"), ("GET", "/api/localhub/overview"),
]
NASTY = ["..", "../..", "%2e%2e", "%2F", "a/../../b", "/etc/passwd", "..\\x", "", " ", "main", "v1",
         "उजुरी", "a" * 300, "%00", "\x00", "refs/pr/1", OID, "0" * 40, "file.txt", "a//b"]
segment = st.one_of(st.sampled_from(NASTY), st.text(min_size=0, max_size=20))
json_value = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                          lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                      max_size=4), max_leaves=12)
KEYS = ["key", "value", "name", "organization", "type", "tag", "message", "startingPoint", "paths", "files",
        "operation", "objects", "oid", "size", "path", "sample", "content", "description", "command", "cwd"]
field_value = st.one_of(json_value, st.sampled_from(NASTY), st.just(base64.b64encode(b"x").decode()))
hub_body = st.dictionaries(st.sampled_from(KEYS), field_value, max_size=5)
commit_line = st.fixed_dictionaries({"key": st.sampled_from(["header", "file", "lfsFile", "deletedFile",
                                                             "deletedFolder", "other"]),
                                     "value": st.dictionaries(st.sampled_from(KEYS + ["summary", "encoding"]),
                                                              field_value, max_size=4)})
body = st.one_of(
    st.just(b""), st.binary(max_size=64),
    json_value.map(lambda v: json.dumps(v).encode()), hub_body.map(lambda v: json.dumps(v).encode()),
    st.lists(commit_line, max_size=4).map(lambda lines: b"\n".join(json.dumps(x).encode() for x in lines)),
)
content_type = st.sampled_from([None, "application/json", "application/x-ndjson", "application/vnd.git-lfs+json",
                                "text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                                "application/octet-stream"])
origin = st.sampled_from([None, HUB_URL, "http://evil.example", "null", "http://localhost:18999"])


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    (root / "sibling").mkdir()
    (root / "sibling" / "keep.txt").write_text("untouched")
    app = create_app(root / "data", public_url=HUB_URL)
    with TestClient(app, base_url=HUB_URL, raise_server_exceptions=False) as client:
        for repo_type, repo_id in (("model", MODEL), ("dataset", DATASET), ("space", SPACE)):
            namespace, name = repo_id.split("/")
            assert client.post("/api/repos/create", json={"type": repo_type, "organization": namespace,
                                                          "name": name}).status_code == 200
        client.put(f"/api/spaces/{SPACE}/local-app", json={"command": [sys.executable, "-c", "pass"],
                                                           "serves_http": False})
        yield client, root


def snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if "data" not in p.relative_to(root).parts[:1]}


def test_random_requests_never_answer_500_nor_write_outside_the_data_dir(hub):
    client, root = hub
    before = snapshot(root)

    @settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "400")), deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(route=st.sampled_from(ROUTES), repo=st.sampled_from([MODEL, DATASET, SPACE, "nobody/none"]) | segment,
           plural=st.sampled_from(["models", "datasets", "spaces"]) | segment,
           prefix=st.sampled_from(["", "datasets/", "spaces/"]), rev=segment, path=segment, seg=segment,
           oid=st.sampled_from([OID, "../x", "zz"]), body=body, content_type=content_type, origin=origin,
           method_override=st.none() | st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]))
    def check(route, repo, plural, prefix, rev, path, seg, oid, body, content_type, origin, method_override):
        method, template = route
        url = template.format(repo=repo, plural=plural, prefix=prefix, rev=rev, path=path, seg=seg, oid=oid,
                              space=SPACE)
        headers = {k: v for k, v in (("content-type", content_type), ("origin", origin)) if v is not None}
        try:
            response = client.request(method_override or method, url, content=body, headers=headers)
        except Exception as error:  # an URL httpx itself refuses (e.g. a NUL) never reaches the hub
            if "Invalid" in str(error) or "invalid" in str(error):
                return
            raise
        deliberate = response.status_code == 501 and "not implemented by the local hub" in response.text
        assert response.status_code < 500 or deliberate, (method_override or method, url, body[:200],
                                                          response.text[:500])

    check()
    assert snapshot(root) == before
    assert (root / "sibling" / "keep.txt").read_text() == "untouched"
