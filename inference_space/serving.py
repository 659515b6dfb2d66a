"""Which model revision this Space serves, loaded once in a background thread; with
CANARY_REVISION, a second version as a canary or a shadow (inference_space/versions.py)."""
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
from inference_space.versions import FiguresBook, canary_problem, log_disagreement, routes_to_canary
from text_cleaning import clean

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
    """Loads the model revision once (in a thread, so /health answers at once) and predicts.
    With a canary, the stable version loads first and serves whatever becomes of the canary."""

    def __init__(self, settings: SpaceSettings, hub, on_disagreement=None):
        self.settings, self.hub, self.state = settings, hub, ServingState()
        self.canary = ServingState(status="off") if settings.canary_revision is None else ServingState()
        self.figures = FiguresBook()
        # on_disagreement(text, stable_prediction, canary_prediction): where both versions scored a text
        self.on_disagreement = on_disagreement or log_disagreement
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
        """The stable version, then the canary: a canary that fails never stops the stable one."""
        self.load_into(self.state, self.settings.model_revision)
        if self.canary.status == "off":
            return
        problem = canary_problem(self.settings.canary_revision, self.settings.canary_share,
                                 self.settings.canary_mode)
        if problem:
            self.canary.status, self.canary.error = "error", problem
            log.error("canary not loaded: %s", problem)
            return
        self.load_into(self.canary, self.settings.canary_revision, "canary ")

    def load_into(self, state: ServingState, pinned: str | None, role: str = "") -> None:
        """Fetch and load the model; the outcome goes to the state (/health), never up the thread."""
        started = time.perf_counter()
        try:
            state.model = self.fetch_with_retries(pinned)
        except Exception as error:  # any failure must show in /health, not kill the server
            state.error = redact(f"{type(error).__name__}: {error}", self.settings)
            state.status = "error"
            log.error("%smodel load failed: %s", role, state.error)
            return
        state.loaded_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        state.load_seconds = time.perf_counter() - started
        state.status = "ok"
        log.info("serving %s%s %s after %.1fs", role, self.settings.model_repo, state.model.revision,
                 state.load_seconds)

    def fetch_with_retries(self, pinned: str | None) -> ServedModel:
        """The Hub may be briefly unreachable when a Space starts; a wrong repo, revision or
        token fails at once."""
        attempts, delay = self.settings.load_attempts, self.settings.load_retry_s
        for attempt in range(1, attempts + 1):
            try:
                return self.fetch_and_load(pinned)
            except Exception as error:
                if attempt == attempts or not is_transient(error):
                    raise
                log.warning("model load attempt %d of %d failed, retrying in %.1fs: %s", attempt, attempts, delay,
                            redact(str(error), self.settings))
                time.sleep(delay)
                delay *= 2

    def fetch_and_load(self, pinned: str | None) -> ServedModel:
        settings = self.settings
        settings.cache_dir.mkdir(parents=True, exist_ok=True)
        revision, commit = resolve_model_revision(self.hub, settings.model_repo, pinned)
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

    def loaded_canary(self) -> ServedModel | None:
        return self.canary.model if self.canary.status == "ok" else None

    def predict(self, texts: list[str]) -> list[dict]:
        """Each prediction names the version that answered it. The stable version scores every
        text; a canary the texts routed to it (it answers them), a shadow every text (it answers none)."""
        model = self.state.model
        if self.state.status != "ok" or model is None:
            raise ModelNotReady(self.state.error or "the model is still loading")
        answers = self.score("stable", model, texts)
        canary = self.loaded_canary()
        if canary is None:
            self.figures.add("stable", answered=len(texts))
            return answers
        shadow = self.settings.canary_mode == "shadow"
        routed = [i for i, text in enumerate(texts) if shadow or routes_to_canary(text, self.settings.canary_share)]
        for i, prediction in zip(routed, self.score("canary", canary, [texts[i] for i in routed])):
            self.compare(texts[i], answers[i], prediction)
            if not shadow:
                answers[i] = prediction
        canary_answered = 0 if shadow else len(routed)
        self.figures.add("canary", answered=canary_answered)
        self.figures.add("stable", answered=len(texts) - canary_answered)
        return answers

    def score(self, role: str, model: ServedModel, texts: list[str]) -> list[dict]:
        if not texts:
            return []
        started = time.perf_counter()
        with self._forward_lock:
            predictions = predict_in_chunks(model.classifier, texts, self.settings.forward_batch_size)
        self.figures.add(role, scored=len(texts), forward_calls=1, forward_seconds=time.perf_counter() - started)
        return [prediction | {"version": model.revision} for prediction in predictions]

    def compare(self, text: str, stable: dict, canary: dict) -> None:
        agreed = stable["label"] == canary["label"]
        self.figures.add("canary", compared=1, agreed=int(agreed))
        if not agreed:
            try:
                self.on_disagreement(text, stable, canary)
            except Exception as error:  # a failing hook must never cost the answer
                log.error("on_disagreement failed: %s: %s", type(error).__name__, error)

    def judge_feedback(self, text: str, corrected_label: str) -> None:
        """With a canary loaded, both versions score a reported text with a corrected label: their
        accuracy on the same labelled requests decides the canary (a paired comparison)."""
        canary = self.loaded_canary()
        if canary is None or self.state.model is None:
            return
        cleaned = clean(text, self.settings.text_cleaning)
        for role, model in (("stable", self.state.model), ("canary", canary)):
            [prediction] = self.score(role, model, [cleaned])
            self.figures.add(role, feedback_labelled=1, feedback_correct=int(prediction["label"] == corrected_label))

    def version_figures(self) -> dict:
        """role -> revision and figures; the canary only while one is configured."""
        roles = {"stable": self.state} | ({} if self.canary.status == "off" else {"canary": self.canary})
        return {role: {"revision": state.model.revision if state.model else None}
                | self.figures.snapshot(role).to_dict() for role, state in roles.items()}

    def health(self) -> dict:
        model, canary = self.state.model, self.canary
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
            "canary": None if canary.status == "off" else {
                "revision": self.settings.canary_revision, "mode": self.settings.canary_mode,
                "share": self.settings.canary_share, "status": canary.status, "error": canary.error,
                "commit": canary.model.commit if canary.model else None},
            "versions": self.version_figures(),
        }


def model_server(settings: SpaceSettings, hub=None) -> ModelServer:
    """The model server; `hub` defaults to hub.HubClient on the settings' endpoint."""
    if hub is None:
        hub = HubClient(settings.endpoint, settings.token, cache_dir=settings.cache_dir / "hub")
    return ModelServer(settings, hub)
