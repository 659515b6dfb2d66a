"""Two versions in one Space: a canary answers a deterministic share of the requests, or a shadow
scores every request while the stable version answers. Per-version figures for /health and /metrics."""
from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass

log = logging.getLogger("inference_space")

CANARY_MODES = ("canary", "shadow")


def routes_to_canary(text: str, share: float) -> bool:
    """The same text always goes to the same version: a hash of the text, not a coin toss, so a
    reporter who sends the text again sees the answer they are reporting on."""
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def canary_problem(revision: str | None, share: float, mode: str) -> str | None:
    """Why the canary settings cannot be used (the stable version then serves alone), or None."""
    if mode not in CANARY_MODES:
        return f"CANARY_MODE={mode!r} is not one of {list(CANARY_MODES)}; set canary or shadow"
    if not 0 <= share <= 1:
        return (f"CANARY_SHARE={share} is outside [0, 1]; set the share of requests the canary answers, "
                "e.g. 0.1")
    if not revision:
        return "CANARY_REVISION is empty; set the canary's version tag"
    return None


def log_disagreement(text: str, stable_prediction: dict, canary_prediction: dict) -> None:
    """The default disagreement hook: a log line (a review queue can take its place)."""
    log.info("versions disagree: stable %s (%.2f), canary %s (%.2f) on a %d-character text",
             stable_prediction["label"], stable_prediction["confidence"], canary_prediction["label"],
             canary_prediction["confidence"], len(text))


@dataclass
class VersionFigures:
    """What one version did since the Space started (in memory: a restart starts from zero)."""

    answered: int = 0          # requests this version answered
    scored: int = 0            # texts through its forward pass (answered, compared or shadowed)
    forward_calls: int = 0
    forward_seconds: float = 0.0
    compared: int = 0          # texts both versions scored (canary figures only)
    agreed: int = 0            # ... on which both gave the same label
    feedback_labelled: int = 0  # feedback reports with a corrected label, scored by this version
    feedback_correct: int = 0   # ... where this version's label is the corrected one

    def to_dict(self) -> dict:
        """The counts, and the rates /health shows (None before anything was counted)."""
        def ratio(part: float, whole: int) -> float | None:
            return round(part / whole, 4) if whole else None

        return vars(self) | {"mean_latency_s": ratio(self.forward_seconds, self.forward_calls),
                             "agreement_rate": ratio(self.agreed, self.compared),
                             "feedback_accuracy": ratio(self.feedback_correct, self.feedback_labelled)}


class FiguresBook:
    """VersionFigures per role ('stable', 'canary'), updated from request threads."""

    def __init__(self):
        self._lock = threading.Lock()
        self.figures = {"stable": VersionFigures(), "canary": VersionFigures()}

    def add(self, role: str, **counts: float) -> None:
        with self._lock:
            figures = self.figures[role]
            for name, value in counts.items():
                setattr(figures, name, getattr(figures, name) + value)

    def snapshot(self, role: str) -> VersionFigures:
        with self._lock:
            return VersionFigures(**vars(self.figures[role]))
