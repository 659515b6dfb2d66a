"""Repos as git-less folders: content-addressed blobs, immutable commits, refs in one JSON file.

Layout under the data dir (one folder per repo):

    repos/<type>s/<namespace>/<name>/
        repo.json                 id, type, created_at, private
        refs.json                 {"branches": {name: commit}, "tags": {name: {"commit", "message"}},
                                   "prs": {number: commit}}   (refs/pr/N, from create_pr)
        commits/<commit id>.json  parent, message, date, files: {path: {sha256, size, git_oid, lfs}}
        blobs/<sha256[:2]>/<sha256>
        space.json, app.log       Spaces only (see spaces.py)
        moved.json                alone in the old folder of a moved repo: {"to": new id}
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from configs import REPO_ID_RULE, is_repo_id

REPO_TYPES = ("model", "dataset", "space")
LFS_THRESHOLD = 10 * 1024 * 1024  # like the Hub: bigger files (and binaries) go through the LFS batch API
BINARY_SUFFIXES = (".bin", ".safetensors", ".pt", ".pth", ".onnx", ".parquet", ".arrow", ".h5", ".msgpack",
                   ".ckpt", ".pkl", ".npy", ".npz", ".zip", ".gz", ".tar", ".model")
SPACE_README = "---\ntitle: {title}\nemoji: 🚀\ncolorFrom: blue\ncolorTo: green\nsdk: {sdk}\npinned: false\n---\n"
GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"
COMMIT_PATTERN = re.compile(r"^[0-9a-f]{40}$")
MOVED = "moved.json"  # left in a moved repo's old folder: {"to": new id}
SHORT_COMMIT_PATTERN = re.compile(r"^[0-9a-f]{7,39}$")
PR_REF = re.compile(r"^refs/pr/([1-9][0-9]*)$")
# git check-ref-format, as the Hub applies it to branch and tag names
BAD_REF_NAME = re.compile(r"(^[./-]|/[./]|\.\.|//|@\{|[\x00-\x20~^:?*\[\\\x7f]|\.lock$|\.lock/|[./]$|^@$)")
OID_PATTERN = re.compile(r"^[0-9a-f]{64}$")


class HubHTTPError(Exception):
    """An error the server answers with `status` and the X-Error-Code header the client maps."""

    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def repo_not_found(repo_type: str, repo_id: str) -> HubHTTPError:
    return HubHTTPError(404, "Repository not found", "RepoNotFound")  # the Hub's words: clients match them


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def write_json_atomic(path: Path, data) -> None:
    """Write to a temp file in the same folder, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as file:
        json.dump(data, file, indent=1, sort_keys=True)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)


def read_json(path: Path):
    return json.loads(path.read_text())


def validate_ref_name(kind: str, name: str) -> str:
    """A branch or tag name git accepts (no spaces, '..', '~^:?*[\\', leading '/' or '-'); 400 like the Hub."""
    if not name or BAD_REF_NAME.search(name) or name.startswith("refs/"):
        raise HubHTTPError(400, f"Invalid {kind} name {name!r}: use letters, digits and '-', '_', '.', '/' "
                                "(no spaces, '..', or any of ~^:?*[\\), not starting with 'refs/'")
    return name


def revision_not_found(repo: "Repo", revision: str) -> HubHTTPError:
    return HubHTTPError(404, f"Invalid rev id: {revision} (not found in {repo.repo_type} {repo.repo_id!r})",
                        "RevisionNotFound")


def validate_repo_id(repo_id: str) -> tuple[str, str]:
    if not is_repo_id(repo_id):
        raise HubHTTPError(400, f"invalid repo id {repo_id!r}: use {REPO_ID_RULE}")
    namespace, name = repo_id.split("/")
    return namespace, name


@dataclass
class Entry:
    """One file of a commit."""

    path: str
    sha256: str
    size: int
    git_oid: str
    lfs: bool

    def tree_json(self) -> dict:
        item = {"type": "file", "oid": self.git_oid, "size": self.size, "path": self.path}
        if self.lfs:
            item["lfs"] = {"oid": self.sha256, "size": self.size, "pointerSize": 134}
        return item

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.git_oid


class Repo:
    """One repo folder. Every mutation holds the repo's lock; commits and blobs are never rewritten."""

    def __init__(self, root: Path, repo_type: str, repo_id: str):
        self.root, self.repo_type, self.repo_id = root, repo_type, repo_id
        self.lock = threading.RLock()

    # --- blobs ---------------------------------------------------------------------
    def blob_path(self, sha256: str) -> Path:
        if not isinstance(sha256, str) or not OID_PATTERN.match(sha256):  # the last guard before a file path
            raise HubHTTPError(422, f"invalid LFS oid {sha256!r}: must be the 64 hex characters of a sha256")
        return self.root / "blobs" / sha256[:2] / sha256

    def has_blob(self, sha256: str) -> bool:
        return self.blob_path(sha256).exists()

    def put_blob(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        if not self.has_blob(sha):
            self._place_blob(sha, lambda file: file.write(data))
        return sha

    def put_blob_file(self, path: Path, expected_sha256: str) -> None:
        """Move an uploaded LFS object into place; refuse it if its content does not match its oid."""
        digest = hashlib.sha256()
        with open(path, "rb") as file:
            for chunk in iter(lambda: file.read(1 << 20), b""):
                digest.update(chunk)
        if digest.hexdigest() != expected_sha256:
            raise HubHTTPError(400, f"uploaded content does not match oid {expected_sha256}")
        target = self.blob_path(expected_sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)

    def _place_blob(self, sha: str, write) -> None:
        target = self.blob_path(sha)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload.")
        try:
            with os.fdopen(fd, "wb") as file:
                write(file)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    # --- refs ----------------------------------------------------------------------
    def refs(self) -> dict:
        return read_json(self.root / "refs.json")

    def _save_refs(self, refs: dict) -> None:
        write_json_atomic(self.root / "refs.json", refs)

    def resolve(self, revision: str) -> str:
        """Commit id of a branch, tag, refs/(heads|tags|pr)/..., or full or short commit id; else RevisionNotFound."""
        refs = self.refs()
        name = revision.removeprefix("refs/heads/").removeprefix("refs/tags/")
        pr = PR_REF.match(revision)
        if pr and pr.group(1) in refs.get("prs", {}):
            return refs["prs"][pr.group(1)]
        if name in refs["branches"] and not revision.startswith("refs/tags/"):
            return refs["branches"][name]
        if name in refs["tags"] and not revision.startswith("refs/heads/"):
            return refs["tags"][name]["commit"]
        if COMMIT_PATTERN.match(revision) and (self.root / "commits" / f"{revision}.json").exists():
            return revision
        if SHORT_COMMIT_PATTERN.match(revision):
            matches = [p.stem for p in (self.root / "commits").glob(f"{revision}*.json")]
            if len(matches) == 1:
                return matches[0]
        raise revision_not_found(self, revision)

    def create_branch(self, branch: str, starting_point: str | None) -> None:
        validate_ref_name("branch", branch)
        with self.lock:
            refs = self.refs()
            if branch in refs["branches"]:
                raise HubHTTPError(409, f"Reference refs/heads/{branch} already exists in {self.repo_id!r}")
            refs["branches"][branch] = self.resolve(starting_point or "main")
            self._save_refs(refs)

    def delete_branch(self, branch: str) -> None:
        with self.lock:
            refs = self.refs()
            if branch == "main":
                raise HubHTTPError(403, "Cannot delete refs/heads/main: it is the default branch")
            if branch not in refs["branches"]:
                raise revision_not_found(self, branch)
            del refs["branches"][branch]
            self._save_refs(refs)

    def create_tag(self, tag: str, revision: str, message: str | None) -> str:
        with self.lock:
            commit = self.resolve(revision)  # like the Hub: a missing revision first, then a bad name
            validate_ref_name("tag", tag)
            refs = self.refs()
            if tag in refs["tags"] or tag in refs["branches"]:
                raise HubHTTPError(409, f"tag {tag!r} already exists in {self.repo_id!r}; tags never move")
            refs["tags"][tag] = {"commit": commit, "message": message or ""}
            self._save_refs(refs)
            return commit

    def delete_tag(self, tag: str) -> None:
        with self.lock:
            refs = self.refs()
            if tag not in refs["tags"]:
                raise revision_not_found(self, tag)
            del refs["tags"][tag]
            self._save_refs(refs)

    # --- commits -------------------------------------------------------------------
    def commit(self, commit_id: str) -> dict:
        return read_json(self.root / "commits" / f"{commit_id}.json")

    def files(self, revision: str) -> tuple[str, dict[str, Entry]]:
        commit_id = self.resolve(revision)
        files = self.commit(commit_id)["files"]
        return commit_id, {path: Entry(path=path, **info) for path, info in files.items()}

    def history(self, revision: str) -> list[dict]:
        commit_id, commits = self.resolve(revision), []
        while commit_id:
            commit = self.commit(commit_id)
            commits.append(commit)
            commit_id = commit["parent"]
        return commits

    @staticmethod
    def _heads(refs: dict, ref: str) -> tuple[dict, str]:
        """The dict and key that hold a branch's (or a refs/pr/N's) head: the refs a commit may move."""
        pr = PR_REF.match(ref)
        return (refs.setdefault("prs", {}), pr.group(1)) if pr else (refs["branches"], ref.removeprefix("refs/heads/"))

    def last_commits(self, revision: str, paths: list[str]) -> dict[str, dict]:
        """The newest commit (up to `revision`) that changed each path, a file or a folder."""
        found, history = {}, self.history(revision)
        for commit, parent in zip(history, history[1:] + [{"files": {}}]):
            changed = {p for p in commit["files"].keys() | parent["files"].keys()
                       if commit["files"].get(p) != parent["files"].get(p)}
            for path in paths:
                if path not in found and any(c == path or c.startswith(path + "/") or not path for c in changed):
                    found[path] = commit
            if len(found) == len(paths):
                break
        return {path: found.get(path, history[-1]) for path in paths}

    def make_commit(self, branch: str, message: str, description: str, additions: dict[str, Entry],
                    deletions: list[str], parent_commit: str | None = None, new_pr: bool = False) -> tuple[str, str]:
        """Apply additions/deletions on top of the branch (or refs/pr/N) head; one new immutable commit.
        With new_pr, the commit opens the next refs/pr/N from the branch (a branch: not a tag or commit), all
        or nothing. Returns (commit id, the ref now at it)."""
        with self.lock:
            refs = self.refs()
            heads, key = (refs["branches"], branch.removeprefix("refs/heads/")) if new_pr else self._heads(refs, branch)
            parent = heads.get(key)
            if parent is None:
                raise revision_not_found(self, branch)
            if parent_commit and parent != parent_commit:
                raise HubHTTPError(412, "The branch was updated since you opened this page. Please refresh and try "
                                        f"again. ({branch!r} is at {parent}, not {parent_commit})")
            files = dict(self.commit(parent)["files"])
            for path in deletions:
                removed = [p for p in files if p == path or p.startswith(path.rstrip("/") + "/")]
                if not removed:
                    raise HubHTTPError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                for p in removed:
                    del files[p]
            for path, entry in additions.items():
                if not self.has_blob(entry.sha256):
                    raise HubHTTPError(422, f"LFS object {entry.sha256} of {path!r} was never uploaded")
                files[path] = {"sha256": entry.sha256, "size": entry.size, "git_oid": entry.git_oid, "lfs": entry.lfs}
            commit_id = self._write_commit(parent, message, description, files)
            if new_pr:
                heads = refs.setdefault("prs", {})
                key = str(max(map(int, heads), default=0) + 1)
            heads[key] = commit_id
            self._save_refs(refs)
            return commit_id, f"refs/pr/{key}" if new_pr else branch

    def squash(self, ref: str, message: str) -> str:
        """One parentless commit with the files of the branch (or refs/pr/N) head, like the Hub's super-squash."""
        if ref.startswith("refs/") and not PR_REF.match(ref):
            raise HubHTTPError(400, f"cannot super-squash {ref!r}: only branches and refs/pr/N move")
        with self.lock:
            refs = self.refs()
            heads, key = self._heads(refs, ref)
            if key not in heads:
                raise revision_not_found(self, ref)
            heads[key] = self._write_commit(None, message, "", self.commit(heads[key])["files"])
            self._save_refs(refs)
            return heads[key]

    def _write_commit(self, parent: str | None, message: str, description: str, files: dict) -> str:
        body = {"parent": parent, "message": message, "description": description, "date": now_iso(), "files": files}
        commit_id = hashlib.sha1(json.dumps(body, sort_keys=True).encode()).hexdigest()
        write_json_atomic(self.root / "commits" / f"{commit_id}.json", {"id": commit_id, **body})
        return commit_id

    def info(self) -> dict:
        return read_json(self.root / "repo.json")

    @property
    def private(self) -> bool:
        return bool(self.info().get("private"))

    def update_info(self, **changes) -> dict:
        with self.lock:
            info = {**self.info(), **changes}
            write_json_atomic(self.root / "repo.json", info)
            return info


class Store:
    """All repos under one data dir. Repo objects (and their locks) are shared by all requests."""

    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)  # repos, secrets and logs are the owner's only
        self._repos: dict[tuple[str, str], Repo] = {}
        self._lock = threading.Lock()

    def _root(self, repo_type: str, repo_id: str) -> Path:
        namespace, name = validate_repo_id(repo_id)
        return self.data_dir / "repos" / f"{repo_type}s" / namespace / name

    def _existing_id(self, repo_type: str, repo_id: str) -> str:
        """The stored spelling of a repo id: ids are case-insensitive, like on the Hub."""
        if (self._root(repo_type, repo_id) / "refs.json").exists():
            return repo_id
        return next((i for i in self.list(repo_type) if i.lower() == repo_id.lower()), repo_id)

    def _handle(self, repo_type: str, repo_id: str) -> Repo:
        repo_id = self._existing_id(repo_type, repo_id)
        with self._lock:
            key = (repo_type, repo_id)
            if key not in self._repos:
                self._repos[key] = Repo(self._root(repo_type, repo_id), repo_type, repo_id)
            return self._repos[key]

    def get(self, repo_type: str, repo_id: str, follow_moves: bool = True) -> Repo:
        """The repo; a moved repo's old id leads to it, like the Hub's redirects (not for delete or move)."""
        if repo_type not in REPO_TYPES:
            raise HubHTTPError(400, f"unknown repo type {repo_type!r}: use one of {REPO_TYPES}")
        repo = self._handle(repo_type, repo_id)
        if (repo.root / "refs.json").exists():
            return repo
        if follow_moves and (repo.root / MOVED).exists():
            return self.get(repo_type, read_json(repo.root / MOVED)["to"], follow_moves=False)
        raise repo_not_found(repo_type, repo_id)

    def create(self, repo_type: str, repo_id: str, extra: dict | None = None) -> Repo:
        if repo_type not in REPO_TYPES:
            raise HubHTTPError(400, f"unknown repo type {repo_type!r}: use one of {REPO_TYPES}")
        repo = self._handle(repo_type, repo_id)
        with repo.lock:
            if (repo.root / "refs.json").exists():
                raise HubHTTPError(409, f"You already created this {repo_type} repo: {repo.repo_id}")
            (repo.root / MOVED).unlink(missing_ok=True)  # a new repo under a moved one's old id ends its redirect
            write_json_atomic(repo.root / "repo.json",
                              {"id": repo_id, "type": repo_type, "created_at": now_iso(), **(extra or {})})
            first = {".gitattributes": GITATTRIBUTES}
            if repo_type == "space":  # the Hub gives a new Space a README with its card header
                sdk = (extra or {}).get("sdk") or "docker"
                first["README.md"] = SPACE_README.format(title=repo_id.split("/")[1], sdk=sdk).encode()
            files = {path: {"sha256": repo.put_blob(data), "size": len(data), "git_oid": git_blob_oid(data),
                            "lfs": False} for path, data in first.items()}
            commit_id = repo._write_commit(None, "initial commit", "", files)
            repo._save_refs({"branches": {"main": commit_id}, "tags": {}})  # written last: marks the repo as existing
        return repo

    def move(self, repo_type: str, from_id: str, to_id: str) -> None:
        """Rename a repo (history, refs and blobs move with it); 409 if the target exists."""
        source = self.get(repo_type, from_id, follow_moves=False)
        target = self._handle(repo_type, to_id)
        with source.lock, target.lock:
            if (target.root / "refs.json").exists():
                raise HubHTTPError(409, f"A {repo_type} repository called {target.repo_id} already exists")
            shutil.rmtree(target.root, ignore_errors=True)  # at most the redirect of an earlier move
            target.root.parent.mkdir(parents=True, exist_ok=True)
            os.rename(source.root, target.root)
            target.update_info(id=to_id)
            write_json_atomic(source.root / MOVED, {"to": to_id})
        with self._lock:
            self._repos.pop((repo_type, source.repo_id), None)

    def delete(self, repo_type: str, repo_id: str) -> None:
        repo = self.get(repo_type, repo_id, follow_moves=False)
        with repo.lock:
            (repo.root / "refs.json").unlink()
            shutil.rmtree(repo.root, ignore_errors=True)

    def list(self, repo_type: str) -> list[str]:
        base = self.data_dir / "repos" / f"{repo_type}s"
        return sorted(f"{p.parent.parent.name}/{p.parent.name}" for p in base.glob("*/*/refs.json"))
