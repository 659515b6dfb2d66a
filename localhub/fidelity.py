"""Hub behaviours the client relies on: which files go through LFS, and refusing what is not offered."""
from __future__ import annotations

from fnmatch import fnmatch

from fastapi import Request

from .storage import LFS_THRESHOLD, Entry, HubHTTPError, Repo

# The LFS patterns of the .gitattributes the Hub gives a new repo; datasets also track media files.
DEFAULT_LFS_PATTERNS = (
    "*.7z *.arrow *.bin *.bz2 *.ckpt *.ftz *.gz *.h5 *.joblib *.lfs.* *.mlmodel *.model *.msgpack *.npy "
    "*.npz *.onnx *.ot *.parquet *.pb *.pickle *.pkl *.pt *.pth *.rar *.safetensors saved_model/**/* "
    "*.tar.* *.tar *.tflite *.tgz *.wasm *.xz *.zip *.zst *tfevents*").split()
DATASET_LFS_PATTERNS = ("*.lz4 *.mds *.pcm *.sam *.raw *.aac *.flac *.mp3 *.ogg *.wav *.bmp *.gif *.png "
                        "*.tiff *.jpg *.jpeg *.webp *.mp4 *.webm").split()


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


def refuse_create_pr(request: Request) -> None:
    """The local hub has no pull requests: say so instead of committing to the branch."""
    if request.query_params.get("create_pr", "").lower() in ("1", "true"):
        raise HubHTTPError(501, "create_pr is not implemented by the local hub (no pull requests): "
                                "commit to a branch instead (revision=...)")


def refuse_private(body: dict) -> None:
    """Every local repo is readable without a token: refuse private=True rather than create a public repo."""
    if body.get("private") or body.get("visibility") not in (None, "public"):
        raise HubHTTPError(501, "private repos are not implemented by the local hub: every repo is readable "
                                "without a token; create it public (private=False)")
