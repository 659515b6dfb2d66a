"""The only place that talks to the Hub and to Spaces (real Hub or the embedded local hub).

CONTRACT (the skeleton; implemented in issue 3). Other modules use exactly these names.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class HubError(RuntimeError):
    """A Hub call failed; the message names the repo/revision and what to do."""


class RepoNotFound(HubError): ...
class RevisionNotFound(HubError): ...
class AuthError(HubError): ...
class TagExists(HubError): ...
class SpaceError(HubError): ...


@dataclass(frozen=True)
class SpaceState:
    stage: str               # RUNNING, PAUSED, BUILDING, RUNTIME_ERROR, STOPPED, ...
    url: str | None          # base URL of the running app (https://owner-name.hf.space or local)
    variables: dict[str, str]


class HubClient:
    """Repos, revisions, tags, uploads and downloads over huggingface_hub.HfApi."""

    def __init__(self, endpoint: str, token: str | None = None): ...

    @classmethod
    def from_config(cls, cfg) -> "HubClient": ...

    def ensure_repo(self, repo_id: str, repo_type: str = "model") -> None: ...
    def repo_exists(self, repo_id: str, repo_type: str = "model") -> bool: ...
    def list_tags(self, repo_id: str, repo_type: str = "model") -> dict[str, str]:
        """tag name -> commit id."""
    def newest_version_tag(self, repo_id: str, repo_type: str = "model") -> str | None:
        """Newest tag matching v<N> or vYYYYMMDD_HHMMSS (ordered by version, not name)."""
    def resolve_revision(self, repo_id: str, revision: str, repo_type: str = "model") -> str:
        """Commit id a branch/tag/commit points to; RevisionNotFound otherwise."""
    def list_files(self, repo_id: str, revision: str, repo_type: str = "model") -> list[str]: ...
    def download_file(self, repo_id: str, filename: str, revision: str, repo_type: str = "model") -> Path: ...
    def download_snapshot(self, repo_id: str, revision: str, repo_type: str = "model",
                          local_dir: Path | None = None) -> Path: ...
    def upload_folder(self, repo_id: str, folder: Path, message: str, repo_type: str = "model",
                      revision: str = "main") -> str:
        """Upload a folder as ONE commit; returns its commit id."""
    def create_tag(self, repo_id: str, tag: str, commit: str, repo_type: str = "model",
                   message: str | None = None) -> None:
        """Tag that commit; TagExists if the tag exists (never moves a tag)."""
    def delete_tag(self, repo_id: str, tag: str, repo_type: str = "model") -> None: ...
    def create_branch(self, repo_id: str, branch: str, repo_type: str = "model") -> None: ...
    def delete_branch(self, repo_id: str, branch: str, repo_type: str = "model") -> None: ...


class SpaceController:
    """Restart, pause and watch one Space."""

    def __init__(self, hub: HubClient, space_id: str): ...
    def state(self) -> SpaceState: ...
    def restart(self) -> None: ...
    def pause(self) -> None: ...
    def set_variable(self, key: str, value: str) -> None: ...
    def wait_until(self, stages: str | set[str], timeout: float, poll: float = 1.0) -> SpaceState:
        """Poll until the stage is one of `stages`; SpaceError on RUNTIME_ERROR or timeout
        (the message says which stage it was stuck in)."""
