"""Settings of the inference Space, read from the environment (the Space's variables and secrets)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, model_validator

from configs import DEFAULT_NAMESPACE, LABEL_SETS, ConfigError, HubSettings
from text_cleaning import DEFAULT_MODE


def default_cache_dir() -> Path:
    # Spaces run as uid 1000 with a writable HOME; HF_HOME is the usual place a Space mounts storage.
    base = os.environ.get("HF_HOME") or Path.home() / ".cache"
    return Path(base) / "inference_space"


class SpaceSettings(HubSettings):
    """Every setting of the inference Space, with its default and meaning (and HF_TOKEN, HF_ENDPOINT)."""

    label: Literal["department", "urgency"] = Field(description="Which classifier this Space serves.")
    model_id: str | None = Field(None, description="Model repo. Default: retrainspace/grievance-<label>-classifier.")
    model_revision: str | None = Field(None, description="Tag or commit to serve. Default: the newest v* tag.")
    canary_revision: str | None = Field(None, description=(
        "A second version (tag or commit) to load next to MODEL_REVISION, set by the retrain job with "
        "PROMOTION_MODE=canary or shadow. Unset: one version. Two versions take twice the memory."))
    canary_share: float = Field(0.1, description=(
        "CANARY_MODE=canary: the share of requests, in [0, 1], the canary answers (chosen by a hash of the "
        "text). A value outside [0, 1] leaves the canary unloaded and the stable version serving."))
    canary_mode: str = Field("canary", description=(
        "'canary': the canary answers CANARY_SHARE of the requests; 'shadow': both versions score every "
        "request and the stable one answers."))
    max_text_chars: int = Field(5000, gt=0, description="Longest accepted text, in characters.")
    max_batch: int = Field(64, gt=0, description="Most texts accepted by one /predict/batch request.")
    max_request_bytes: int = Field(4 * 1024 * 1024, gt=0, description=(
        "Larger request bodies are refused with 413 before they are read. The default fits MAX_BATCH "
        "texts of MAX_TEXT_CHARS each, even JSON-escaped."))
    forward_batch_size: int = Field(32, gt=0, description="Texts per model forward pass.")
    max_length: int = Field(128, gt=0, le=8192, description="Texts are truncated to this many tokens.")
    text_cleaning: Literal["sambodhan", "none"] = Field(DEFAULT_MODE, description=(
        "'sambodhan': drop URLs and HTML tags and collapse whitespace before the model, as upstream "
        "Sambodhan does; 'none': texts as sent. Use the mode the model was trained with."))
    inference_backend: Literal["torch", "onnx", "auto"] = Field("torch", description=(
        "'onnx': the release's model.onnx with ONNX Runtime, without torch (a release without one is "
        "exported to int8 at load, which needs torch); 'auto': onnx when the release has model.onnx, "
        "else torch."))
    feedback_db_url: str | None = Field(None, description="Feedback store URL. Default: the store's SQLite file.")
    review_threshold: float = Field(0.5, ge=0, le=1, description=(
        "A /predict answer whose calibrated confidence is below this is queued for review in the "
        "feedback store; 0: off. Must be above 1/number of labels (the top label's least confidence)."))
    review_margin: float = Field(0.1, ge=0, le=1, description=(
        "A /predict answer whose top two calibrated scores are closer than this is queued for review; 0: off."))
    review_queue_max: int = Field(500, ge=0, description=(
        "Most queued predictions of this label type waiting for review; when full, new ones are not "
        "queued until reviewers catch up. 0: queue nothing."))
    cache_dir: Path = Field(default_factory=default_cache_dir, description="Model snapshots, ONNX exports, SQLite.")
    load_attempts: int = Field(3, gt=0, description="Tries to fetch the model when the Hub cannot be reached.")
    load_retry_s: float = Field(2.0, ge=0, description="Wait before the second try; doubles after each failure.")
    retry_after_s: int = Field(5, gt=0, description="Retry-After sent while the model is loading.")
    host: str = Field("127.0.0.1", description=(
        "Address uvicorn binds: loopback unless set; the Docker image sets HOST=0.0.0.0 (a Space "
        "must listen on all interfaces)."))
    port: int = Field(7860, gt=0, lt=65536, description="Port uvicorn binds (Spaces use 7860).")

    @model_validator(mode="after")
    def review_threshold_can_fire(self) -> "SpaceSettings":
        least = 1 / len(LABEL_SETS[self.label])  # the top score of K labels is at least 1/K
        if 0 < self.review_threshold <= least:
            raise ValueError(
                f"REVIEW_THRESHOLD={self.review_threshold:g} can never queue a prediction: with "
                f"{len(LABEL_SETS[self.label])} {self.label} labels the top confidence is at least {least:.3f}; "
                f"set it above {least:.3f}, or to 0 to queue by REVIEW_MARGIN only")
        return self

    @property
    def labels(self) -> list[str]:
        return LABEL_SETS[self.label]

    @property
    def model_repo(self) -> str:
        return self.model_id or f"{DEFAULT_NAMESPACE}/grievance-{self.label}-classifier"


def load_settings(**overrides) -> SpaceSettings:
    """Settings from the environment; a bad value fails with the variable's name."""
    try:
        return SpaceSettings(**overrides)
    except ValidationError as error:
        lines = [f"  {str(e['loc'][0]).upper() if e['loc'] else 'settings'}: {e['msg'].removeprefix('Value error, ')}"
                 for e in error.errors()]
        raise ConfigError("invalid inference Space settings:\n" + "\n".join(lines)
                          + "\nFix the variable in the Space settings.") from None
