"""Which model revision this Space serves, loaded once in a background thread."""
from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from configs import MASK, mask_url
from hub import AuthError, HubClient, HubError, RepoNotFound, RevisionNotFound
from inference_space.classifier import Classifier, load_classifier, predict_in_chunks
from inference_space.onnx_model import onnx_release_files
from inference_space.settings import SpaceSettings

log = logging.getLogger("inference_space")


class ModelNotReady(RuntimeError):
    """Predictions were asked for before the model finished loading (or after it failed)."""


@dataclass
class ServedModel:
    revision: str          # the tag (or pinned revision) served, e.g. v20261125_120000
    commit: str
    folder: Path
    metadata: dict | None
    classifier: Classifier


@dataclass
class ServingState:
    status: str = "loading"  # loading | ok | error
    error: str | None = None
    model: ServedModel | None = None
    loaded_at: str | None = None
    load_seconds: float | None = None


def resolve_model_revision(hub, repo_id: str, pinned: str | None) -> tuple[str, str]:
    """(revision name, commit id): the pinned revision, else the newest v* tag of the repo."""
    revision = pinned or hub.newest_version_tag(repo_id)
    if revision is None:
        raise LookupError(
            f"model repo {repo_id} has no v* version tag yet; promote a model first or set MODEL_REVISION"
        )
    return revision, hub.resolve_revision(repo_id, revision)


def is_transient(error: Exception) -> bool:
    """Worth another try: the Hub was unreachable or failed, not a wrong repo, revision or token."""
    permanent = (RepoNotFound, RevisionNotFound, AuthError)
    return isinstance(error, (HubError, OSError)) and not isinstance(error, permanent)


def snapshot_dir(cache_dir: Path, repo_id: str, commit: str) -> Path:
    return cache_dir / "models" / repo_id.replace("/", "--") / commit


def read_metadata(folder: Path) -> dict | None:
    """The retrain job's metadata.json of this version, or None when absent or unreadable."""
    try:
        return json.loads((folder / "metadata.json").read_text())
    except (OSError, ValueError):
        return None


def redact(message: str, settings: SpaceSettings) -> str:
    """An error message safe to show: no token, no database password."""
    if settings.token:
        message = message.replace(settings.token, MASK)
    if settings.feedback_db_url:
        message = message.replace(settings.feedback_db_url, mask_url(settings.feedback_db_url))
    return message


class ModelServer:
    """Loads the model revision once (in a thread, so /health answers at once) and predicts."""

    def __init__(self, settings: SpaceSettings, hub):
        self.settings, self.hub, self.state = settings, hub, ServingState()
        # A fast tokenizer is not safe to call from two threads at once ("Already borrowed"),
        # and on a CPU Space one forward at a time already uses every core.
        self._forward_lock = threading.Lock()
        self._loader: threading.Thread | None = None

    def start_loading(self) -> threading.Thread:
        """Start the load once; later calls return the same thread."""
        if self._loader is None:
            self._loader = threading.Thread(target=self.load, name="model-loader", daemon=True)
            self._loader.start()
        return self._loader

    def load(self) -> None:
        """Fetch and load the model; the outcome goes to the state (/health), never up the thread."""
        started = time.perf_counter()
        try:
            self.state.model = self.fetch_with_retries()
        except Exception as error:  # any failure must show in /health, not kill the server
            self.state.error = redact(f"{type(error).__name__}: {error}", self.settings)
            self.state.status = "error"
            log.error("model load failed: %s", self.state.error)
            return
        self.state.loaded_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.state.load_seconds = time.perf_counter() - started
        self.state.status = "ok"
        log.info("serving %s %s after %.1fs", self.settings.model_repo, self.state.model.revision,
                 self.state.load_seconds)

    def fetch_with_retries(self) -> ServedModel:
        """The Hub may be briefly unreachable when a Space starts; a wrong repo, revision or
        token fails at once."""
        attempts, delay = self.settings.load_attempts, self.settings.load_retry_s
        for attempt in range(1, attempts + 1):
            try:
                return self.fetch_and_load()
            except Exception as error:
                if attempt == attempts or not is_transient(error):
                    raise
                log.warning("model load attempt %d of %d failed, retrying in %.1fs: %s", attempt, attempts, delay,
                            redact(str(error), self.settings))
                time.sleep(delay)
                delay *= 2

    def fetch_and_load(self) -> ServedModel:
        settings = self.settings
        settings.cache_dir.mkdir(parents=True, exist_ok=True)
        revision, commit = resolve_model_revision(self.hub, settings.model_repo, settings.model_revision)
        log.info("loading %s at %s (%s)", settings.model_repo, revision, commit)
        folder = Path(self.hub.download_snapshot(
            settings.model_repo, commit, local_dir=snapshot_dir(settings.cache_dir, settings.model_repo, commit),
            files=self.files_to_fetch(commit),
        ))
        classifier = load_classifier(folder, settings.labels, settings.inference_backend, settings.max_length)
        return ServedModel(revision, commit, folder, read_metadata(folder), classifier)

    def files_to_fetch(self, commit: str) -> list[str] | None:
        """The ONNX backend's files when it will serve the release's model.onnx; else all (None)."""
        if self.settings.inference_backend == "torch":
            return None
        return onnx_release_files(self.hub.list_files(self.settings.model_repo, commit))

    def predict(self, texts: list[str]) -> list[dict]:
        model = self.state.model
        if self.state.status != "ok" or model is None:
            raise ModelNotReady(self.state.error or "the model is still loading")
        with self._forward_lock:
            return predict_in_chunks(model.classifier, texts, self.settings.forward_batch_size)

    def health(self) -> dict:
        model = self.state.model
        return {
            "status": self.state.status,
            "label_type": self.settings.label,
            "model_id": self.settings.model_repo,
            "revision": model.revision if model else self.settings.model_revision,
            "commit": model.commit if model else None,
            "loaded_at": self.state.loaded_at,
            "load_seconds": self.state.load_seconds and round(self.state.load_seconds, 2),
            "backend": self.settings.inference_backend,
            "error": self.state.error,
        }


def model_server(settings: SpaceSettings, hub=None) -> ModelServer:
    """The model server; `hub` defaults to hub.HubClient on the settings' endpoint."""
    if hub is None:
        hub = HubClient(settings.endpoint, settings.token, cache_dir=settings.cache_dir / "hub")
    return ModelServer(settings, hub)
