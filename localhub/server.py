"""The HTTP API: the subset of the Hugging Face Hub that huggingface_hub.HfApi and datasets call.

Errors carry the X-Error-Code header the client maps (RepoNotFound, RevisionNotFound,
EntryNotFound) and every answer an X-Request-Id. With a token configured, a wrong token is a 401
on every call; without a token writes are refused (but /api/validate-yaml) and reads allowed,
except of private repos (401 RepoNotFound, like the Hub). /api/ routes the hub does not offer
answer 501 (fidelity.unrouted).
"""
from __future__ import annotations

import atexit
import base64
import hashlib
import hmac
import html
import json
import os
import secrets
import tempfile
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import unquote

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .fidelity import card_metadata_problems, goes_to_lfs, ignored, lfs_patterns, not_offered, settings_change, unrouted
from .security import (
    field,
    json_body,
    optional,
    own_origins,
    refuse_cross_origin_write,
    refuse_foreign_host,
    serves_loopback_only,
    token_matches,
    validate_oid,
    validate_repo_path,
    validate_variable,
)
from .spaces import SpaceRuntimes
from .storage import Entry, HubHTTPError, Repo, Store, git_blob_oid, repo_not_found
from .web import existing as listed_repos
from .web import web_router

PLURAL = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
BAD_TOKEN = "Invalid credentials in Authorization header"
READ_METHODS = {"GET", "HEAD"}
USER = {"name": "local", "fullname": "Local user"}  # the one user; a repo id without namespace is theirs
ANONYMOUS_POSTS = {"/api/validate-yaml"}  # writes nothing: the Hub answers it without a token
MAX_LOG_LINES = 1_000_000


def error_response(error: HubHTTPError) -> JSONResponse:
    # headers are latin-1: a Nepali file name in the message must not turn a 404 into a 500
    headers = {"X-Error-Message": error.message.encode("ascii", "backslashreplace").decode()}
    if error.code:
        headers["X-Error-Code"] = error.code
    return JSONResponse({"error": error.message}, status_code=error.status, headers=headers)


def repo_type_of(plural: str) -> str:
    if plural not in PLURAL:  # /api/collections/..., /api/papers/...: areas of the Hub not offered here
        raise not_offered(f"/api/{plural}/...")
    return PLURAL[plural]


def revision_and_path(request: Request, marker: str, namespace: str, name: str) -> tuple[str, str]:
    """Split '<marker>/<revision>/<path>' from the raw URL: a quoted revision may hold '/'."""
    raw = request.scope.get("raw_path", request.url.path.encode()).decode().split("?")[0]
    parts = raw.split("/")
    for i in range(2, len(parts)):
        if parts[i] == marker and unquote(parts[i - 2]) == namespace and unquote(parts[i - 1]).removesuffix(".git") == name:
            rest = parts[i + 1:]
            if not rest or not rest[0]:
                raise HubHTTPError(400, f"missing revision after /{marker}/")
            return unquote(rest[0]), "/".join(unquote(p) for p in rest[1:]).strip("/")
    raise HubHTTPError(400, f"cannot parse revision from {raw!r}")


def tree_entries(files: dict[str, Entry], commit_id: str, folder: str, recursive: bool) -> list[dict]:
    """Files and folders under `folder` (direct children unless recursive); 404 if nothing is there."""
    prefix = folder + "/" if folder else ""
    entries: dict[str, dict] = {}
    for path in sorted(files):
        if not path.startswith(prefix):
            continue
        parts = path[len(prefix):].split("/")
        for depth in range(1, len(parts)):
            sub = prefix + "/".join(parts[:depth])
            if sub not in entries and (recursive or depth == 1):
                entries[sub] = folder_json(sub, commit_id)
        if recursive or len(parts) == 1:
            entries[path] = files[path].tree_json()
    if folder and not entries:
        raise HubHTTPError(404, f"path {folder!r} not found", "EntryNotFound")
    return list(entries.values())


def is_true(value) -> bool:
    return isinstance(value, str) and value.lower() in ("1", "true")


def with_last_commits(repo: Repo, commit_id: str, entries: list[dict]) -> list[dict]:
    """expand=true: each file or folder with the last commit that changed it, like the Hub."""
    last = repo.last_commits(commit_id, [entry["path"] for entry in entries])
    summary = {path: {"id": c["id"], "title": c["message"], "date": c["date"]} for path, c in last.items()}
    return [{**entry, "lastCommit": summary[entry["path"]]} for entry in entries]


def commit_json(commit: dict, formatted: bool) -> dict:
    item = {"id": commit["id"], "authors": [{"user": USER["name"]}], "date": commit["date"],
            "title": commit["message"], "message": commit["description"]}
    if formatted:  # the Hub renders them as HTML
        item["formatted"] = {"title": html.escape(commit["message"]), "message": html.escape(commit["description"])}
    return item


def expanded(info: dict, expand: list[str]) -> dict:
    """expand=[...]: only the asked properties, like the Hub; one the local hub has no data for
    (gguf, safetensors, cardData, ...) is left out, so the client reads it as None."""
    return {key: value for key, value in info.items() if key in ("id", "_id", *expand)} if expand else info


def sibling(entry: Entry, blobs: str | None) -> dict:
    """A file of repo info; with ?blobs=true also its blob id and LFS details, like the Hub."""
    item = {"rfilename": entry.path, "size": entry.size}
    if is_true(blobs):
        item["blobId"] = entry.git_oid
        if entry.lfs:
            item["lfs"] = {"sha256": entry.sha256, "size": entry.size, "pointerSize": 134}
    return item


def folder_json(path: str, commit_id: str) -> dict:
    return {"type": "directory", "oid": hashlib.sha1(f"{commit_id}:{path}".encode()).hexdigest(), "path": path}


def repo_at(store: Store, request: Request, repo_type: str, namespace: str, name: str) -> Repo:
    """The repo, if this caller may see it: a private repo is its owner's only (401 like the Hub)."""
    repo = store.get(repo_type, f"{namespace}/{name}")
    if repo.private and not request.state.owner:
        raise HubHTTPError(401, "Repository not found", "RepoNotFound")
    return repo


def full_repo_id(body: dict) -> str:
    """organization/name from a create or delete body; a bare name is the user's, like on the Hub."""
    name = field(body, "name")
    organization = optional(body, "organization")
    if organization:
        return f"{organization}/{name}"
    return name if "/" in name else f"{USER['name']}/{name}"


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def create_app(data_dir: Path, token: str | None = None, public_url: str | None = None,
               pid_file: Path | None = None) -> FastAPI:
    """The hub app. `pid_file` (CLI server only) holds this process id while it serves."""
    store = Store(Path(data_dir))
    spaces = SpaceRuntimes(public_url or "", Path(data_dir), hidden=[token] if token else [])
    origins, loopback_only = own_origins(public_url), serves_loopback_only(public_url)
    atexit.register(spaces.stop_all)  # also when an in-process hub is never stopped
    upload_key = secrets.token_bytes(32)  # signs LFS upload URLs (the PUT carries no token)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if pid_file:
            pid_file.write_text(f"{os.getpid()}\n")  # `python -m localhub stop` SIGTERMs it
        spaces.kill_previous_children()  # a hub that was SIGKILLed may have left Space processes
        spaces.resume_running(listed_repos(store, "space"))
        try:
            yield
        finally:
            spaces.stop_all()
            if pid_file:
                pid_file.unlink(missing_ok=True)

    app = FastAPI(title="localhub", lifespan=lifespan)
    app.state.store, app.state.spaces = store, spaces

    @app.exception_handler(HubHTTPError)
    async def _hub_error(request: Request, error: HubHTTPError):
        return error_response(error)

    @app.exception_handler(StarletteHTTPException)
    async def _unrouted(request: Request, error: StarletteHTTPException):
        return error_response(unrouted(request, error))

    @app.middleware("http")
    async def check_token(request: Request, call_next):
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        # On an open hub every caller is the owner; with a token, its holder is (and only reads go without it).
        request.state.owner = token is None or token_matches(given, token)
        if token is not None and not request.url.path.startswith("/api/localhub/lfs/") and not request.state.owner:
            if given or (request.method not in READ_METHODS and request.url.path not in ANONYMOUS_POSTS):
                return error_response(HubHTTPError(401, BAD_TOKEN))
        return await call_next(request)

    @app.middleware("http")  # added after the token check: runs before it
    async def check_origin(request: Request, call_next):
        refusal = refuse_foreign_host(request, loopback_only) or refuse_cross_origin_write(request, origins)
        return error_response(refusal) if refusal else await call_next(request)

    @app.middleware("http")  # outermost: every answer, refusals included, names its request like the Hub's
    async def request_id(request: Request, call_next):
        response = await call_next(request)
        response.headers["X-Request-Id"] = f"Root={uuid.uuid4()}"
        return response

    # The routers are included in this order: the first route that matches a path answers it.
    app.include_router(service_router(store))
    app.include_router(repos_router(store, spaces))
    app.include_router(refs_router(store))
    app.include_router(uploads_router(store, upload_key))
    app.include_router(downloads_router(store))
    app.include_router(spaces_router(store, spaces, token))

    app.include_router(web_router(store, spaces, token))  # the page at / (localhub/web.py)
    return app


def service_router(store: Store) -> APIRouter:
    """Health, whoami and YAML validation."""
    router = APIRouter()
    @router.get("/api/localhub/health")
    def health():
        return {"status": "ok", "service": "localhub", "data_dir": str(store.data_dir)}

    @router.get("/api/whoami-v2")
    def whoami():
        return {"type": "user", **USER, "orgs": [], "auth": {"accessToken": {"displayName": "local", "role": "write"}}}

    @router.post("/api/validate-yaml")
    async def validate_yaml(request: Request):
        errors, warnings = card_metadata_problems(field(await json_body(request), "content"))
        return JSONResponse({"errors": errors, "warnings": warnings}, status_code=400 if errors else 200)

    return router


def repos_router(store: Store, spaces: SpaceRuntimes) -> APIRouter:
    """Create, delete, list and describe repos; their trees, paths and commits."""
    router = APIRouter()
    @router.post("/api/repos/create")
    async def create_repo(request: Request):
        body = await json_body(request)
        repo_type = optional(body, "type") or "model"
        if repo_type not in URL_PREFIX:
            raise HubHTTPError(400, f"unknown repo type {repo_type!r}: use model, dataset or space")
        repo_id = full_repo_id(body)
        private = settings_change(body, repo_type) or False
        extra = {"private": private, **({"sdk": body.get("sdk")} if repo_type == "space" else {})}
        url = f"{base_url(request)}/{URL_PREFIX[repo_type]}{repo_id}"
        try:
            repo = await run_in_threadpool(store.create, repo_type, repo_id, extra)
        except HubHTTPError as error:
            if error.status != 409:
                raise
            # Like the Hub, a 409 names the existing repo: create_repo(exist_ok=True) reads its url.
            return JSONResponse({"error": error.message, "url": url}, status_code=409)
        return {"url": url, "name": repo.repo_id, "id": repo.repo_id}

    @router.api_route("/api/repos/delete", methods=["DELETE", "POST"])
    async def delete_repo(request: Request):
        body = await json_body(request)
        repo_id, repo_type = full_repo_id(body), optional(body, "type") or "model"
        if repo_type == "space":
            spaces.forget(store.get("space", repo_id))
        store.delete(repo_type, repo_id)
        return {}

    @router.post("/api/repos/move")
    async def move_repo(request: Request):
        body = await json_body(request)
        repo_type = optional(body, "type") or "model"
        source = store.get(repo_type, field(body, "fromRepo"))
        if repo_type == "space":
            spaces.forget(source)
        await run_in_threadpool(store.move, repo_type, source.repo_id, field(body, "toRepo"))
        return {}

    @router.put("/api/{plural}/{namespace}/{name}/settings")
    async def update_settings(request: Request, plural: str, namespace: str, name: str):
        repo = repo_at(store, request, repo_type_of(plural), namespace, name)
        private = settings_change(await json_body(request), repo.repo_type)
        if private is not None:
            repo.update_info(private=private)
        return {}

    def repo_info_json(request: Request, repo: Repo, revision: str) -> dict:
        commit_id, files = repo.files(revision)
        commit = repo.commit(commit_id)
        info = repo.info()
        data = {
            "id": repo.repo_id, "_id": repo.repo_id, "author": repo.repo_id.split("/")[0], "sha": commit_id,
            "private": repo.private, "disabled": False, "gated": False, "downloads": 0, "likes": 0, "tags": [],
            "createdAt": info["created_at"], "lastModified": commit["date"],
            "siblings": [sibling(entry, request.query_params.get("blobs")) for _, entry in sorted(files.items())],
            "downloadsAllTime": 0, "trendingScore": 0, "usedStorage": sum(entry.size for entry in files.values()),
        }
        if repo.repo_type == "space":
            runtime = spaces.runtime(repo)
            data.update(sdk=info.get("sdk") or "docker", runtime=runtime, host=runtime["host"],
                        subdomain=repo.repo_id.replace("/", "-"))
        return expanded(data, request.query_params.getlist("expand") or request.query_params.getlist("expand[]"))

    @router.get("/api/{plural}")
    def list_repos(request: Request, plural: str, author: str | None = None, search: str | None = None):
        repo_type = repo_type_of(plural)
        ids = [i for i in store.list(repo_type) if (author is None or i.split("/")[0] == author)
               and (search is None or search in i)]
        repos = [store.get(repo_type, repo_id) for repo_id in ids]
        return [repo_info_json(request, repo, "main") for repo in repos if request.state.owner or not repo.private]

    @router.get("/api/{plural}/{namespace}/{name}")
    def repo_info(request: Request, plural: str, namespace: str, name: str):
        repo = repo_at(store, request, repo_type_of(plural), namespace, name)
        return repo_info_json(request, repo, "main")

    @router.get("/api/{plural}/{namespace}/{name}/revision/{revision:path}")
    def repo_info_at(request: Request, plural: str, namespace: str, name: str, revision: str):
        repo = repo_at(store, request, repo_type_of(plural), namespace, name)
        revision, _ = revision_and_path(request, "revision", namespace, name)
        return repo_info_json(request, repo, revision)

    @router.get("/api/{plural}/{namespace}/{name}/tree/{rest:path}")
    def list_tree(request: Request, plural: str, namespace: str, name: str, rest: str):
        repo = repo_at(store, request, repo_type_of(plural), namespace, name)
        revision, folder = revision_and_path(request, "tree", namespace, name)
        commit_id, files = repo.files(revision)
        entries = tree_entries(files, commit_id, folder, is_true(request.query_params.get("recursive")))
        return with_last_commits(repo, commit_id, entries) if is_true(request.query_params.get("expand")) else entries

    @router.post("/api/{plural}/{namespace}/{name}/paths-info/{rest:path}")
    async def paths_info(request: Request, plural: str, namespace: str, name: str, rest: str):
        repo = repo_at(store, request, repo_type_of(plural), namespace, name)
        revision, _ = revision_and_path(request, "paths-info", namespace, name)
        if request.headers.get("content-type", "").startswith("application/json"):
            body = await json_body(request)
            paths, expand = optional(body, "paths", list) or [], body.get("expand") is True
        else:
            form = await request.form()
            paths, expand = form.getlist("paths"), is_true(form.get("expand"))
        if not all(isinstance(p, str) for p in paths):
            raise HubHTTPError(422, "'paths' must be a list of strings")
        commit_id, files = repo.files(revision)
        found = []
        for path in (p.strip("/") for p in paths):
            if path in files:
                found.append(files[path].tree_json())
            elif any(p.startswith(path + "/") for p in files) or path == "":
                found.append(folder_json(path, commit_id))
        return with_last_commits(repo, commit_id, found) if expand else found

    @router.get("/api/{plural}/{namespace}/{name}/refs")
    def list_refs(request: Request, plural: str, namespace: str, name: str, include_prs: bool = False):
        repo = repo_at(store, request, repo_type_of(plural), namespace, name)
        refs = repo.refs()

        def ref(kind: str, ref_name: str, commit: str) -> dict:
            return {"name": ref_name, "ref": f"refs/{kind}/{ref_name}", "targetCommit": commit}

        return {
            "branches": [ref("heads", b, c) for b, c in sorted(refs["branches"].items())],
            "tags": [ref("tags", t, info["commit"]) for t, info in sorted(refs["tags"].items())],
            "converts": [],
            **({"pullRequests": [{"name": f"refs/pr/{n}", "ref": f"refs/pr/{n}", "targetCommit": c}
                                 for n, c in sorted(refs.get("prs", {}).items(), key=lambda pr: int(pr[0]))]}
               if include_prs else {}),
        }

    @router.get("/api/{plural}/{namespace}/{name}/commits/{rest:path}")
    def list_commits(request: Request, plural: str, namespace: str, name: str, rest: str):
        repo = repo_at(store, request, repo_type_of(plural), namespace, name)
        revision, _ = revision_and_path(request, "commits", namespace, name)
        formatted = "formatted" in request.query_params.getlist("expand[]")
        return [commit_json(c, formatted) for c in repo.history(revision)]

    return router


def refs_router(store: Store) -> APIRouter:
    """Branches and tags."""
    router = APIRouter()
    @router.post("/api/{plural}/{namespace}/{name}/branch/{rest:path}")
    async def create_branch(request: Request, plural: str, namespace: str, name: str, rest: str):
        repo = repo_at(store, request, repo_type_of(plural), namespace, name)
        branch, _ = revision_and_path(request, "branch", namespace, name)
        starting_point = optional(await json_body(request, required=False), "startingPoint")
        await run_in_threadpool(repo.create_branch, branch, starting_point)
        return {}

    @router.delete("/api/{plural}/{namespace}/{name}/branch/{rest:path}")
    def delete_branch(request: Request, plural: str, namespace: str, name: str, rest: str):
        repo = repo_at(store, request, repo_type_of(plural), namespace, name)
        branch, _ = revision_and_path(request, "branch", namespace, name)
        repo.delete_branch(branch)
        return {}

    @router.post("/api/{plural}/{namespace}/{name}/tag/{rest:path}")
    async def create_tag(request: Request, plural: str, namespace: str, name: str, rest: str):
        repo = repo_at(store, request, repo_type_of(plural), namespace, name)
        revision, _ = revision_and_path(request, "tag", namespace, name)
        body = await json_body(request)
        if not body.get("tag"):
            raise HubHTTPError(400, "missing 'tag' in the request body")
        commit = await run_in_threadpool(repo.create_tag, field(body, "tag"), revision, optional(body, "message"))
        return {"name": body["tag"], "targetCommit": commit}

    @router.delete("/api/{plural}/{namespace}/{name}/tag/{rest:path}")
    def delete_tag(request: Request, plural: str, namespace: str, name: str, rest: str):
        repo = repo_at(store, request, repo_type_of(plural), namespace, name)
        tag, _ = revision_and_path(request, "tag", namespace, name)
        repo.delete_tag(tag)
        return {}

    return router


def uploads_router(store: Store, upload_key: bytes) -> APIRouter:
    """Preupload, the LFS batch API and signed LFS uploads, and commits."""
    router = APIRouter()

    def upload_signature(repo: Repo, oid: str) -> str:
        message = f"{repo.repo_type}/{repo.repo_id}/{oid}".encode()
        return hmac.new(upload_key, message, hashlib.sha256).hexdigest()

    @router.post("/api/{plural}/{namespace}/{name}/preupload/{rest:path}")
    async def preupload(request: Request, plural: str, namespace: str, name: str, rest: str):
        repo = repo_at(store, request, repo_type_of(plural), namespace, name)
        revision, _ = revision_and_path(request, "preupload", namespace, name)
        body = await json_body(request)
        _, existing = repo.files(revision)
        answers, patterns = [], lfs_patterns(repo, existing)
        gitignore = optional(body, "gitIgnore") or file_text(repo, existing.get(".gitignore"))
        for item in optional(body, "files", list) or []:
            item = item if isinstance(item, dict) else {}
            path = validate_repo_path(field(item, "path", str, "a preupload file"))
            sample = decode_base64(optional(item, "sample", str, "a preupload file") or "", path)
            lfs = goes_to_lfs(path, optional(item, "size", int, "a preupload file") or 0, sample, patterns)
            current = existing.get(path)
            oid = None if current is None else (current.sha256 if lfs else current.git_oid)
            answers.append({"path": path, "uploadMode": "lfs" if lfs else "regular",
                            "shouldIgnore": ignored(path, gitignore), "oid": oid})
        return {"files": answers, "commitOid": None}

    async def lfs_batch(request: Request, repo_type: str, namespace: str, name_git: str):
        repo = repo_at(store, request, repo_type, namespace, name_git.removesuffix(".git"))
        body = await json_body(request)
        if body.get("operation") != "upload":
            raise HubHTTPError(400, "only the LFS 'upload' operation is supported; download through /resolve")
        objects = []
        for obj in optional(body, "objects", list) or []:
            obj = obj if isinstance(obj, dict) else {}
            oid = validate_oid(field(obj, "oid", str, "an LFS object"))
            answer = {"oid": oid, "size": field(obj, "size", int, "an LFS object"), "authenticated": True}
            if not repo.has_blob(oid):
                href = (f"{base_url(request)}/api/localhub/lfs/{repo_type}s/{repo.repo_id}/{oid}"
                        f"?sig={upload_signature(repo, oid)}")
                answer["actions"] = {"upload": {"href": href, "header": {}}}
            objects.append(answer)
        return JSONResponse({"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
                            media_type="application/vnd.git-lfs+json")

    def lfs_batch_route(repo_type: str):
        async def route(request: Request, namespace: str, name_git: str):
            return await lfs_batch(request, repo_type, namespace, name_git)
        return route

    for prefix, repo_type in (("", "model"), ("/datasets", "dataset"), ("/spaces", "space")):
        router.add_api_route(f"{prefix}/{{namespace}}/{{name_git}}/info/lfs/objects/batch",
                          lfs_batch_route(repo_type), methods=["POST"])

    @router.put("/api/localhub/lfs/{plural}/{namespace}/{name}/{oid}")
    async def lfs_upload(request: Request, plural: str, namespace: str, name: str, oid: str, sig: str = ""):
        repo = repo_at(store, request, repo_type_of(plural), namespace, name)
        validate_oid(oid)
        if not hmac.compare_digest(sig.encode(), upload_signature(repo, oid).encode()):
            raise HubHTTPError(403, "invalid upload signature: ask the LFS batch endpoint for a new upload URL")
        staging = repo.root / "blobs" / ".staging"
        staging.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=staging)
        try:
            with os.fdopen(fd, "wb") as file:
                async for chunk in request.stream():
                    file.write(chunk)
            await run_in_threadpool(repo.put_blob_file, Path(tmp), oid)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return Response(status_code=200)

    @router.post("/api/{plural}/{namespace}/{name}/commit/{rest:path}")
    async def commit(request: Request, plural: str, namespace: str, name: str, rest: str):
        repo = repo_at(store, request, repo_type_of(plural), namespace, name)
        branch, _ = revision_and_path(request, "commit", namespace, name)
        lines = commit_lines(await request.body())
        create_pr = is_true(request.query_params.get("create_pr"))
        commit_id, ref = await run_in_threadpool(apply_commit, repo, branch, lines, create_pr)
        repo_url = f"{base_url(request)}/{URL_PREFIX[repo.repo_type]}{repo.repo_id}"
        # no discussion threads: the "pull request" is its ref, refs/pr/N, which the client reads from this URL
        pr_url = f"{repo_url}/discussions/{ref.rsplit('/', 1)[-1]}" if create_pr else None
        return {"success": True, "commitOid": commit_id, "commitUrl": f"{repo_url}/commit/{commit_id}",
                "pullRequestUrl": pr_url}

    @router.post("/api/{plural}/{namespace}/{name}/super-squash/{rest:path}")
    async def super_squash(request: Request, plural: str, namespace: str, name: str, rest: str):
        repo = repo_at(store, request, repo_type_of(plural), namespace, name)
        branch, _ = revision_and_path(request, "super-squash", namespace, name)
        message = optional(await json_body(request, required=False), "message") or "Super-squash branch using huggingface_hub"
        return {"commitId": await run_in_threadpool(repo.squash, branch, message)}

    return router


def downloads_router(store: Store) -> APIRouter:
    """resolve: file downloads by revision, for every repo type."""
    router = APIRouter()
    def resolve(request: Request, repo_type: str, namespace: str, name: str):
        repo = repo_at(store, request, repo_type, namespace, name)
        revision, path = revision_and_path(request, "resolve", namespace, name)
        commit_id, files = repo.files(revision)
        entry = files.get(path)
        if entry is None:
            raise HubHTTPError(404, f"{path!r} not found at revision {revision!r} of {repo.repo_id!r}",
                               "EntryNotFound")
        headers = {"X-Repo-Commit": commit_id, "ETag": f'"{entry.etag}"', "Accept-Ranges": "bytes"}
        return FileResponse(repo.blob_path(entry.sha256), headers=headers, media_type="application/octet-stream")

    def resolve_route(repo_type: str):
        def route(request: Request, namespace: str, name: str, rest: str):
            return resolve(request, repo_type, namespace, name)
        return route

    for prefix, repo_type in (("/datasets", "dataset"), ("/spaces", "space"), ("", "model")):
        router.add_api_route(f"{prefix}/{{namespace}}/{{name}}/resolve/{{rest:path}}",
                          resolve_route(repo_type), methods=["GET", "HEAD"])

    @router.api_route("/{name}/resolve/{rest:path}", methods=["GET", "HEAD"])
    def resolve_without_namespace(name: str, rest: str):
        raise repo_not_found("model", name)  # the Hub's canonical repos (gpt2): none exist here

    return router


def spaces_router(store: Store, spaces: SpaceRuntimes, token: str | None) -> APIRouter:
    """Space runtime, restart and pause, hardware, variables, secrets and the local app binding."""
    router = APIRouter()
    def space(request: Request, namespace: str, name: str) -> Repo:
        return repo_at(store, request, "space", namespace, name)

    @router.get("/api/spaces/{namespace}/{name}/runtime")
    def space_runtime(request: Request, namespace: str, name: str):
        return spaces.runtime(space(request, namespace, name))

    def variable(request_body: dict, kind: str) -> tuple[str, str]:
        return validate_variable(kind, request_body.get("key"), request_body.get("value"), hub_is_open=token is None)

    @router.post("/api/spaces/{namespace}/{name}/restart")
    def restart_space(request: Request, namespace: str, name: str):
        return spaces.restart(space(request, namespace, name))

    @router.post("/api/spaces/{namespace}/{name}/pause")
    def pause_space(request: Request, namespace: str, name: str):
        return spaces.pause(space(request, namespace, name))

    @router.post("/api/spaces/{namespace}/{name}/hardware")
    async def request_hardware(request: Request, namespace: str, name: str):
        body = await request.json()
        return spaces.request_hardware(space(request, namespace, name), body.get("flavor"), body.get("sleepTimeSeconds"))

    @router.post("/api/spaces/{namespace}/{name}/sleeptime")
    async def set_sleep_time(request: Request, namespace: str, name: str):
        return spaces.set_sleep_time(space(request, namespace, name), (await request.json()).get("seconds"))

    @router.get("/api/spaces/{namespace}/{name}/variables")
    def get_variables(request: Request, namespace: str, name: str):
        return spaces.settings(space(request, namespace, name))["variables"]

    @router.post("/api/spaces/{namespace}/{name}/variables")
    async def add_variable(request: Request, namespace: str, name: str):
        body = await json_body(request)
        key, value = variable(body, "variable")
        return spaces.set_variable(space(request, namespace, name), key, value, optional(body, "description"))

    @router.delete("/api/spaces/{namespace}/{name}/variables")
    async def delete_variable(request: Request, namespace: str, name: str):
        return spaces.delete_variable(space(request, namespace, name), field(await json_body(request), "key"))

    @router.get("/api/spaces/{namespace}/{name}/secrets")
    def get_secrets(request: Request, namespace: str, name: str):
        return {key: {"updatedAt": None} for key in spaces.secret_names(space(request, namespace, name))}

    @router.post("/api/spaces/{namespace}/{name}/secrets")
    async def add_secret(request: Request, namespace: str, name: str):
        key, value = variable(await json_body(request), "secret")
        spaces.set_secret(space(request, namespace, name), key, value)
        return {}

    @router.delete("/api/spaces/{namespace}/{name}/secrets")
    async def delete_secret(request: Request, namespace: str, name: str):
        spaces.delete_secret(space(request, namespace, name), field(await json_body(request), "key"))
        return {}

    @router.put("/api/spaces/{namespace}/{name}/local-app")
    async def bind_local_app(request: Request, namespace: str, name: str):
        body = await json_body(request)
        data = spaces.bind(space(request, namespace, name), body.get("command"), body.get("cwd"),
                           bool(body.get("serves_http", True)))
        return data["app"]

    @router.get("/api/spaces/{namespace}/{name}/local-app/logs")
    def local_app_logs(request: Request, namespace: str, name: str, lines: int = 100):
        if not 0 < lines <= MAX_LOG_LINES:
            raise HubHTTPError(422, f"'lines' must be between 1 and {MAX_LOG_LINES}, got {lines}")
        return {"lines": spaces.logs(space(request, namespace, name), lines)}

    return router


def file_text(repo: Repo, entry: Entry | None) -> str:
    return "" if entry is None else repo.blob_path(entry.sha256).read_text(errors="replace")


def decode_base64(text: str, path: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise HubHTTPError(400, f"the content of {path!r} is not valid base64") from None


def commit_lines(body: bytes) -> list[dict]:
    """The ndjson commit payload: one JSON object per line; 400 naming the bad line."""
    lines = []
    for number, line in enumerate(body.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as error:
            raise HubHTTPError(400, f"line {number} of the commit payload is not JSON: {error}") from None
        if not isinstance(item, dict) or not isinstance(item.get("value", {}), dict):
            raise HubHTTPError(400, f"line {number} of the commit payload must be {{'key': ..., 'value': {{...}}}}")
        lines.append(item)
    return lines


def apply_commit(repo: Repo, branch: str, lines: list[dict], new_pr: bool) -> tuple[str, str]:
    """Turn the ndjson commit payload into additions/deletions and one new commit: (its id, its ref)."""
    header, additions, deletions = {}, {}, []
    for line in lines:
        key, value = line.get("key"), line.get("value", {})
        if key == "header":
            header = value
            continue
        if key not in ("file", "lfsFile", "deletedFile", "deletedFolder"):
            raise HubHTTPError(400, f"unsupported commit operation {key!r}")
        where = f"a {key!r} commit operation"
        path = field(value, "path", str, where)
        validate_repo_path(path.rstrip("/") if key == "deletedFolder" else path)
        if key == "file":
            if value.get("encoding", "base64") != "base64":
                raise HubHTTPError(400, f"unsupported encoding {value.get('encoding')!r} for {path!r}")
            data = decode_base64(field(value, "content", str, where), path)
            additions[path] = Entry(path, repo.put_blob(data), len(data), git_blob_oid(data), False)
        elif key == "lfsFile":
            sha = validate_oid(field(value, "oid", str, where))
            if not repo.has_blob(sha):
                raise HubHTTPError(422, f"LFS object {sha} of {path!r} was never uploaded")
            size = repo.blob_path(sha).stat().st_size
            additions[path] = Entry(path, sha, size, lfs_pointer_oid(sha, size), True)
        else:
            deletions.append(path)
    summary = optional(header, "summary", str, "the commit header")
    if not summary:
        raise HubHTTPError(400, "the commit has no message (header.summary)")
    return repo.make_commit(branch, summary, optional(header, "description", str, "the commit header") or "",
                            additions, deletions, optional(header, "parentCommit", str, "the commit header"), new_pr)


def lfs_pointer_oid(sha256: str, size: int) -> str:
    pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
    return git_blob_oid(pointer)
