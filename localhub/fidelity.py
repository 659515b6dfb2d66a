"""Hub behaviours the client relies on: LFS and .gitignore rules, card metadata checks, settings, and
refusing (501) what is not offered."""
from __future__ import annotations

import re
from fnmatch import fnmatch

import yaml
from fastapi import Request
from starlette.exceptions import HTTPException as StarletteHTTPException

from .storage import LFS_THRESHOLD, Entry, HubHTTPError, Repo

# The LFS patterns of the .gitattributes the Hub gives a new repo; datasets also track media files.
DEFAULT_LFS_PATTERNS = (
    "*.7z *.arrow *.bin *.bz2 *.ckpt *.ftz *.gz *.h5 *.joblib *.lfs.* *.mlmodel *.model *.msgpack *.npy "
    "*.npz *.onnx *.ot *.parquet *.pb *.pickle *.pkl *.pt *.pth *.rar *.safetensors saved_model/**/* "
    "*.tar.* *.tar *.tflite *.tgz *.wasm *.xz *.zip *.zst *tfevents*").split()
DATASET_LFS_PATTERNS = ("*.lz4 *.mds *.pcm *.sam *.raw *.aac *.flac *.mp3 *.ogg *.wav *.bmp *.gif *.png "
                        "*.tiff *.jpg *.jpeg *.webp *.mp4 *.webm").split()
LIST_KEYS = ("tags", "datasets", "language", "metrics")  # card metadata keys that hold a string or a list
# /api/ paths of a repo id without namespace: the Hub's canonical repos (gpt2), of which the local hub has none
ONE_SEGMENT_REPO = re.compile(r"^/api/(models|datasets|spaces)/[^/]+(/(revision|tree|commits|refs|paths-info)(/.*)?)?$")
OFFERED_AREAS = {"models", "datasets", "spaces", "repos", "whoami-v2", "validate-yaml"}  # /api/<area>/...


def lfs_patterns(repo: Repo, files: dict[str, Entry]) -> list[str]:
    """The `filter=lfs` patterns of the revision's .gitattributes, or the Hub's defaults without one."""
    entry = files.get(".gitattributes")
    if entry is None:
        return DEFAULT_LFS_PATTERNS + (DATASET_LFS_PATTERNS if repo.repo_type == "dataset" else [])
    text = repo.blob_path(entry.sha256).read_text(errors="replace")
    return [line.split()[0] for line in text.splitlines()
            if "filter=lfs" in line.split()[1:] and not line.lstrip().startswith("#")]


def goes_to_lfs(path: str, size: int, sample: bytes, patterns: list[str]) -> bool:
    """Like the Hub's preupload: tracked by .gitattributes, too big for git, or binary."""
    name = path.rsplit("/", 1)[-1]
    tracked = any(fnmatch(path if "/" in pattern else name, pattern) for pattern in patterns)
    return tracked or size >= LFS_THRESHOLD or b"\0" in sample


def ignored(path: str, gitignore: str) -> bool:
    """Whether a .gitignore (its plain glob lines; no negation) ignores `path`, as the Hub's preupload says."""
    for line in gitignore.splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith(("#", "!")):
            continue
        anchored = pattern.startswith("/") or "/" in pattern.rstrip("/")
        pattern = pattern.strip("/")
        candidates = [path] if anchored else [path, *path.split("/")]
        prefixes = ["/".join(path.split("/")[:i]) for i in range(1, path.count("/") + 1)]
        if any(fnmatch(c, pattern) for c in candidates + prefixes):
            return True
    return False


def card_metadata_problems(content: str) -> tuple[list[dict], list[dict]]:
    """(errors, warnings) of a README's YAML header, like the Hub's /api/validate-yaml (a subset of
    its schema: the header is a mapping, list-valued keys are lists, model-index is a list of results)."""
    content = content.lstrip()
    if not content.startswith("---"):
        return [], [{"message": "empty or missing yaml metadata in repo card"}]
    header = content.split("\n---", 1)[0].removeprefix("---")
    try:
        metadata = yaml.safe_load(header)
    except yaml.YAMLError as error:
        return [{"message": f"YAML header is not valid YAML: {error}"}], []
    if metadata is None:
        return [], [{"message": "empty or missing yaml metadata in repo card"}]
    if not isinstance(metadata, dict):
        return [{"message": f"YAML header must be a mapping, not {type(metadata).__name__}"}], []
    errors = [{"message": f'"{key}" must be a string or a list of strings'} for key in LIST_KEYS
              if key in metadata and not isinstance(metadata[key], (str, list))]
    model_index = metadata.get("model-index")
    if model_index is not None and not (isinstance(model_index, list)
                                        and all(isinstance(m, dict) and "name" in m for m in model_index)):
        errors.append({"message": '"model-index" must be a list of objects, each with a "name" and "results"'})
    return errors, []


def settings_change(body: dict, repo_type: str) -> bool | None:
    """The new `private` flag of a settings update (None: unchanged); 501 for gating, 400 for the rest."""
    if body.get("gated") not in (None, False):
        raise HubHTTPError(501, "gated repos are not implemented by the local hub (one user, no access "
                                "requests): leave gated unset or False")
    visibility = body.get("visibility")
    if visibility == "protected" and repo_type == "space":
        raise HubHTTPError(501, "protected Spaces are not implemented by the local hub: use public or private")
    if visibility not in (None, "public", "private"):
        raise HubHTTPError(400, f"invalid visibility {visibility!r}: use 'public' or 'private'")
    private = body.get("private")
    if private is not None and not isinstance(private, bool):
        raise HubHTTPError(400, f"'private' must be true or false, got {private!r}")
    return private if visibility is None else visibility == "private"


def not_offered(what: str) -> HubHTTPError:
    return HubHTTPError(501, f"{what} is not implemented by the local hub: it offers repos, commits, "
                             "files, branches, tags, pull-request refs (refs/pr/N, without discussions), LFS and "
                             "Spaces; not discussions, collections, webhooks, gated access, orgs, likes, papers, "
                             "inference or jobs")


def unrouted(request: Request, error: StarletteHTTPException) -> HubHTTPError:
    """What no route serves: a 501 for the Hub API the local hub does not offer, instead of a 404 that
    reads like a missing repo; a repo id without namespace (the Hub's canonical repos, none here) is
    RepoNotFound; a method one of its routes does not take stays a 405."""
    path = request.url.path
    area = (path.split("/") + [""])[2]
    if not path.startswith("/api/") or area == "localhub" or error.status_code not in (404, 405) \
            or error.status_code == 405 and area in OFFERED_AREAS:
        return HubHTTPError(error.status_code, f"{request.method} {path}: {error.detail}")
    if ONE_SEGMENT_REPO.match(path):
        return HubHTTPError(404, "Repository not found", "RepoNotFound")
    return not_offered(f"{request.method} {path}")
