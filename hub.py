"""The only place that talks to the Hub and to Spaces (real Hub or the embedded local hub).

Every call goes through `HfApi(endpoint=..., token=...)` with the endpoint passed explicitly:
huggingface_hub and datasets read HF_ENDPOINT once at import time, so relying on the
environment would silently talk to whichever Hub was configured first. For the same reason
`load_dataset.py` downloads the split files at the resolved commit through this client instead of
calling `datasets.load_dataset(repo_id)` (which would use the import-time endpoint).

This adapter starts no servers: without HF_TOKEN it expects the local hub to answer already
(`python -m localhub serve`, `seed` or `demo` start it).

Errors from huggingface_hub/httpx become `HubError` subclasses whose message names the
repo/revision and the fix; the token never appears in them.
"""
from __future__ import annotations

import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import httpx2  # huggingface_hub's HTTP client
from huggingface_hub import HfApi, constants
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import disable_progress_bars

from configs import REAL_HUB_ENDPOINT, REPO_ID_RULE

NUMBERED_TAG = re.compile(r"^v(\d+)$")
TIMESTAMP_TAG = re.compile(r"^v(\d{8}_\d{6})(?:_([A-Za-z0-9.-]+))?$")


class HubError(RuntimeError):
    """A Hub call failed; the message names the repo/revision and what to do."""


class RepoNotFound(HubError): ...
class RevisionNotFound(HubError): ...
class EntryNotFound(HubError): ...
class AuthError(HubError): ...
class TagExists(HubError): ...
class BranchExists(HubError): ...
class SpaceError(HubError): ...
class SpaceNotFound(SpaceError, RepoNotFound): ...


@dataclass(frozen=True)
class SpaceState:
    stage: str               # RUNNING, PAUSED, BUILDING, RUNTIME_ERROR, STOPPED, ...
    url: str | None          # base URL of the running app (https://owner-name.hf.space or local)
    variables: dict[str, str]
    error: str | None = None  # the Space's error message (last log lines on the local hub)


def suffix_key(suffix: str | None) -> tuple:
    """No suffix first, then numeric suffixes by number (_9 before _10), then any other text."""
    if not suffix:
        return ()
    return (0, int(suffix)) if suffix.isdigit() else (1, suffix)


def version_key(tag: str) -> tuple | None:
    """Sort key of a version tag: vN by N, vYYYYMMDD_HHMMSS[_suffix] by time; None for other tags."""
    if match := NUMBERED_TAG.match(tag):
        return (0, int(match.group(1)), ())
    if match := TIMESTAMP_TAG.match(tag):
        try:
            moment = datetime.strptime(match.group(1), "%Y%m%d_%H%M%S")
        except ValueError:
            return None
        return (1, moment.timestamp(), suffix_key(match.group(2)))
    return None


class HubClient:
    """Repos, revisions, tags, uploads and downloads over huggingface_hub.HfApi."""

    def __init__(self, endpoint: str, token: str | None = None, cache_dir: str | Path | None = None):
        self.endpoint = endpoint.rstrip("/")
        if self.endpoint != REAL_HUB_ENDPOINT:
            # The local hub has no Xet storage; the flag is read per call, so this works even when
            # huggingface_hub was imported before HF_HUB_DISABLE_XET=1 could be set.
            constants.HF_HUB_DISABLE_XET = True
        # token=False: never fall back to a token saved on this machine for another Hub
        self.api = HfApi(endpoint=self.endpoint, token=token or False)
        self.cache_dir = str(cache_dir) if cache_dir else None

    @classmethod
    def from_config(cls, cfg) -> "HubClient":
        """The real Hub with HF_TOKEN; else the embedded local hub, which must already answer."""
        client = cls(cfg.endpoint, cfg.token)
        if cfg.embedded:
            client.check_local_hub()
        return client

    def check_local_hub(self) -> None:
        """Fail at once, with the fix, when no hub answers: an adapter starts no servers."""
        try:
            httpx.get(f"{self.endpoint}/api/localhub/health", timeout=5)
        except httpx.HTTPError as error:
            raise HubError(
                f"no local hub answers at {self.endpoint} ({type(error).__name__}); without HF_TOKEN the job uses "
                "the embedded local hub: start it with `python -m localhub serve` (or `python -m localhub demo`), "
                "or set LOCALHUB_URL (or HF_ENDPOINT) to the URL of a running one"
            ) from None

    def __repr__(self) -> str:
        return f"HubClient(endpoint={self.endpoint!r})"

    # --- errors ------------------------------------------------------------------------
    @contextmanager
    def _errors(self, repo_id: str, repo_type: str = "model", revision: str | None = None,
                filename: str | None = None, on_conflict: HubError | None = None):
        """Turn huggingface_hub/httpx errors into HubError subclasses with the fix in the message."""
        what = f"{repo_type} repo {repo_id!r}"
        at = f" at revision {revision!r}" if revision else ""
        try:
            yield
        except HFValidationError as error:
            raise RepoNotFound(f"invalid repo id {repo_id!r} ({error}); use {REPO_ID_RULE}") from None
        except HfHubHTTPError as error:
            status = error.response.status_code if error.response is not None else None
            if status in (401, 403):
                raise AuthError(
                    f"{self.endpoint} refused access to {what} (HTTP {status}): check HF_TOKEN "
                    "(it must be a valid token with write access to this repo)"
                ) from None
            if isinstance(error, RepositoryNotFoundError) or (status == 404 and revision is None and not filename):
                raise RepoNotFound(
                    f"{what} not found on {self.endpoint}: check the repo id and repo type, or create it"
                ) from None
            if isinstance(error, RevisionNotFoundError):
                raise RevisionNotFound(
                    f"revision {revision!r} not found in {what}: use an existing branch, tag or commit id "
                    f"(list them with list_tags)"
                ) from None
            if isinstance(error, EntryNotFoundError):
                raise EntryNotFound(f"{filename!r} not found in {what}{at}") from None
            if status == 409 and on_conflict is not None:
                raise on_conflict from None
            raise HubError(f"Hub call for {what}{at} failed (HTTP {status}): {error.server_message or error}") from None
        except (httpx.HTTPError, httpx2.HTTPError, ConnectionError, LocalEntryNotFoundError) as error:
            # LocalEntryNotFoundError: a download found neither the Hub nor a cached copy
            raise HubError(
                f"cannot reach the Hub at {self.endpoint} for {what} ({type(error).__name__}): check HF_ENDPOINT, "
                "or start the local hub with `python -m localhub serve`"
            ) from None

    # --- repos -------------------------------------------------------------------------
    def ensure_repo(self, repo_id: str, repo_type: str = "model") -> None:
        with self._errors(repo_id, repo_type):
            self.api.create_repo(repo_id, repo_type=repo_type, exist_ok=True,
                                 space_sdk="docker" if repo_type == "space" else None)

    def repo_exists(self, repo_id: str, repo_type: str = "model") -> bool:
        try:
            with self._errors(repo_id, repo_type):
                self.api.repo_info(repo_id, repo_type=repo_type)
            return True
        except RepoNotFound:
            return False

    def list_repos(self, repo_type: str = "model", author: str | None = None) -> list[str]:
        """Repo ids of that type (of one author/namespace if given)."""
        listing = {"model": self.api.list_models, "dataset": self.api.list_datasets, "space": self.api.list_spaces}
        with self._errors(author or "*", repo_type):
            return sorted(info.id for info in listing[repo_type](author=author))

    def list_tags(self, repo_id: str, repo_type: str = "model") -> dict[str, str]:
        """tag name -> commit id."""
        with self._errors(repo_id, repo_type):
            refs = self.api.list_repo_refs(repo_id, repo_type=repo_type)
        return {ref.name: ref.target_commit for ref in refs.tags}

    def list_branches(self, repo_id: str, repo_type: str = "model") -> dict[str, str]:
        """branch name -> commit id."""
        with self._errors(repo_id, repo_type):
            refs = self.api.list_repo_refs(repo_id, repo_type=repo_type)
        return {ref.name: ref.target_commit for ref in refs.branches}

    def newest_version_tag(self, repo_id: str, repo_type: str = "model") -> str | None:
        """Newest tag matching v<N> or vYYYYMMDD_HHMMSS (ordered by version, not name)."""
        versions = [(key, tag) for tag in self.list_tags(repo_id, repo_type) if (key := version_key(tag))]
        return max(versions)[1] if versions else None

    def resolve_revision(self, repo_id: str, revision: str, repo_type: str = "model") -> str:
        """Commit id a branch/tag/commit points to; RevisionNotFound otherwise."""
        with self._errors(repo_id, repo_type, revision=revision):
            return self.api.repo_info(repo_id, repo_type=repo_type, revision=revision).sha

    def list_files(self, repo_id: str, revision: str, repo_type: str = "model") -> list[str]:
        with self._errors(repo_id, repo_type, revision=revision):
            return sorted(self.api.list_repo_files(repo_id, repo_type=repo_type, revision=revision))

    def download_file(self, repo_id: str, filename: str, revision: str, repo_type: str = "model") -> Path:
        with self._errors(repo_id, repo_type, revision=revision, filename=filename):
            return Path(self.api.hf_hub_download(repo_id, filename, repo_type=repo_type, revision=revision,
                                                 cache_dir=self.cache_dir))

    def download_snapshot(self, repo_id: str, revision: str, repo_type: str = "model",
                          local_dir: Path | None = None, files: list[str] | None = None) -> Path:
        """The repo at `revision` (only `files` when given) in a folder."""
        with self._errors(repo_id, repo_type, revision=revision):
            return Path(self.api.snapshot_download(repo_id, repo_type=repo_type, revision=revision,
                                                   cache_dir=self.cache_dir, local_dir=local_dir,
                                                   allow_patterns=files))

    def upload_folder(self, repo_id: str, folder: Path, message: str, repo_type: str = "model",
                      revision: str = "main", delete_patterns: list[str] | None = None) -> str:
        """Upload a folder as ONE commit (deleting files matching `delete_patterns` in it); returns its commit id."""
        if not Path(folder).is_dir():
            raise HubError(f"cannot upload {folder}: not a folder")
        with self._errors(repo_id, repo_type, revision=revision):
            info = self.api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message=message,
                                          repo_type=repo_type, revision=revision, delete_patterns=delete_patterns)
        return info.oid

    def upload_file(self, repo_id: str, path_in_repo: str, data: bytes | Path, message: str,
                    repo_type: str = "model", revision: str = "main") -> str:
        """Upload one file (bytes or a local path) as one commit; returns its commit id."""
        with self._errors(repo_id, repo_type, revision=revision):
            info = self.api.upload_file(path_or_fileobj=data, path_in_repo=path_in_repo, repo_id=repo_id,
                                        repo_type=repo_type, revision=revision, commit_message=message)
        return info.oid

    def create_tag(self, repo_id: str, tag: str, commit: str, repo_type: str = "model",
                   message: str | None = None) -> None:
        """Tag that commit; TagExists if the tag exists (never moves a tag)."""
        exists = TagExists(f"tag {tag!r} already exists in {repo_type} repo {repo_id!r}: version tags never move; "
                           "choose a new version name")
        with self._errors(repo_id, repo_type, revision=commit, on_conflict=exists):
            self.api.create_tag(repo_id, tag=tag, revision=commit, repo_type=repo_type, tag_message=message)

    def delete_tag(self, repo_id: str, tag: str, repo_type: str = "model") -> None:
        with self._errors(repo_id, repo_type, revision=tag):
            self.api.delete_tag(repo_id, tag=tag, repo_type=repo_type)

    def create_branch(self, repo_id: str, branch: str, repo_type: str = "model",
                      revision: str | None = None, exist_ok: bool = True) -> None:
        """Branch at `revision` (default: main). exist_ok=False makes it an atomic test-and-set:
        BranchExists when the branch is already there (usable as a Hub-side lock)."""
        exists = BranchExists(f"branch {branch!r} already exists in {repo_type} repo {repo_id!r}")
        with self._errors(repo_id, repo_type, revision=revision or branch, on_conflict=exists):
            self.api.create_branch(repo_id, branch=branch, revision=revision, repo_type=repo_type, exist_ok=exist_ok)

    def delete_branch(self, repo_id: str, branch: str, repo_type: str = "model") -> None:
        with self._errors(repo_id, repo_type, revision=branch):
            self.api.delete_branch(repo_id, branch=branch, repo_type=repo_type)

    def space(self, space_id: str) -> "SpaceController":
        return SpaceController(self, space_id)


def disable_hub_progress_bars() -> None:
    """Uploads and downloads print no progress bars (for piped output: one line per update)."""
    disable_progress_bars()


def pause_space(endpoint: str, token: str | None, space_id: str) -> None:
    """Pause one Space with nothing but where the Hub is (for a job whose settings are invalid)."""
    SpaceController(HubClient(endpoint, token), space_id).pause()


class SpaceController:
    """Restart, pause and watch one Space."""

    def __init__(self, hub: HubClient, space_id: str):
        self.hub, self.space_id = hub, space_id

    @contextmanager
    def _errors(self):
        try:
            with self.hub._errors(self.space_id, "space"):
                yield
        except RepoNotFound:
            raise SpaceNotFound(
                f"Space {self.space_id!r} not found on {self.hub.endpoint}: check SPACE_REPO_ID / RETRAIN_SPACE_ID "
                f"({REPO_ID_RULE}), or create the Space"
            ) from None

    def state(self) -> SpaceState:
        with self._errors():
            runtime = self.hub.api.get_space_runtime(self.space_id)
            variables = {key: var.value for key, var in self.hub.api.get_space_variables(self.space_id).items()}
        raw = runtime.raw
        url = raw.get("host")
        if not url and raw.get("domains"):
            url = f"https://{raw['domains'][0]['domain']}"
        return SpaceState(stage=runtime.stage, url=url, variables=variables, error=raw.get("errorMessage"))

    def restart(self) -> None:
        with self._errors():
            self.hub.api.restart_space(self.space_id)

    def pause(self) -> None:
        with self._errors():
            self.hub.api.pause_space(self.space_id)

    def set_variable(self, key: str, value: str) -> None:
        with self._errors():
            self.hub.api.add_space_variable(self.space_id, key, value)

    def delete_variable(self, key: str) -> None:
        with self._errors():
            self.hub.api.delete_space_variable(self.space_id, key)

    def set_secret(self, key: str, value: str) -> None:
        with self._errors():
            self.hub.api.add_space_secret(self.space_id, key, value)

    def request_hardware(self, flavor: str) -> None:
        with self._errors():
            self.hub.api.request_space_hardware(self.space_id, flavor)

    def set_sleep_time(self, seconds: int) -> None:
        with self._errors():
            self.hub.api.set_space_sleep_time(self.space_id, seconds)

    def wait_until(self, stages: str | set[str], timeout: float, poll: float = 1.0) -> SpaceState:
        """Poll until the stage is one of `stages`; SpaceError on RUNTIME_ERROR or timeout
        (the message says which stage it was stuck in)."""
        wanted = {stages} if isinstance(stages, str) else set(stages)
        deadline = time.monotonic() + timeout
        while True:
            state = self.state()
            if state.stage in wanted:
                return state
            if state.stage in ("RUNTIME_ERROR", "BUILD_ERROR"):
                detail = f":\n{state.error}" if state.error else "; see the Space's logs"
                raise SpaceError(f"Space {self.space_id!r} failed ({state.stage}) while waiting for "
                                 f"{'/'.join(sorted(wanted))}{detail}")
            if time.monotonic() >= deadline:
                hint = (" - stuck in BUILDING: check the Space's build logs and its startup command"
                        if state.stage == "BUILDING" else "")
                raise SpaceError(f"Space {self.space_id!r} still {state.stage} after {timeout:.0f}s, "
                                 f"expected {'/'.join(sorted(wanted))}{hint}")
            time.sleep(min(poll, max(0.0, deadline - time.monotonic())))
