"""Run a Docker Space pushed to the local hub: a documented emulation of the Hub's build.

On the Hub, a Space whose README says `sdk: docker` is built from the Dockerfile at the root of
its repo, and the image's CMD runs. The local hub has no Docker. It writes the repo's files at
main into a checkout folder and runs the Dockerfile's CMD there, with this interpreter for
`python`, and with the Space's variables and secrets as for any local Space. What differs from
the Hub, on purpose:

- `RUN`, `COPY` and `ENV` are not executed: the packages are this machine's, and the image's
  paths (`/home/user/...`) do not exist here. The Space's own variables still apply.
- The CMD must be exec form (`CMD ["python", "app.py"]`), as hadolint asks anyway.

A Space bound with `bind-space` runs its bound command instead.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from .storage import HubHTTPError, Repo

CHECKOUTS = "checkout"
PYTHON_NAMES = ("python", "python3", f"python{sys.version_info.major}.{sys.version_info.minor}")


def dockerfile_command(text: str) -> list[str]:
    """The argv of the last CMD of a Dockerfile (exec form); HubHTTPError otherwise."""
    joined = text.replace("\\\n", " ")
    commands = [line.strip()[3:].strip() for line in joined.splitlines() if line.strip().upper().startswith("CMD ")]
    if not commands:
        raise HubHTTPError(422, "the Space's Dockerfile has no CMD: the local hub runs the CMD of a Docker Space")
    try:
        argv = json.loads(commands[-1])
    except ValueError:
        argv = None
    if not isinstance(argv, list) or not argv or not all(isinstance(part, str) for part in argv):
        raise HubHTTPError(422, f"the Space's Dockerfile CMD {commands[-1]!r} is not exec form: "
                                'write it as CMD ["python", "app.py"]')
    return [sys.executable if argv[0] in PYTHON_NAMES else argv[0], *argv[1:]]


def checkout(repo: Repo, commit: str, files: dict) -> Path:
    """The repo's files at `commit` in their own folder (kept while that commit is served)."""
    base = repo.root / CHECKOUTS
    folder = base / commit
    if not folder.exists():
        staging = base / f".{commit}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        for path, entry in files.items():
            target = (staging / path).resolve()
            if not target.is_relative_to(staging.resolve()):
                raise HubHTTPError(422, f"file {path!r} of the Space repo leaves its checkout")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(repo.blob_path(entry.sha256), target)
        staging.rename(folder)
    for old in base.iterdir():
        if old.name != commit:
            shutil.rmtree(old, ignore_errors=True)
    return folder


def docker_app(repo: Repo) -> dict | None:
    """How to run a Docker Space from its repo at main; None when the repo has no Dockerfile."""
    commit, files = repo.files("main")
    if "Dockerfile" not in files:
        return None
    command = dockerfile_command(repo.blob_path(files["Dockerfile"].sha256).read_text(errors="replace"))
    return {"command": command, "cwd": str(checkout(repo, commit, files)), "serves_http": True,
            "docker": {"commit": commit}}
