"""Active learning: uncertain predictions go to the feedback store's review queue, off the request path.

/predict hands each answer whose calibrated confidence is under REVIEW_THRESHOLD, or whose top two
scores are closer than REVIEW_MARGIN, to one writer thread through a bounded in-memory buffer; the
request never waits for the database. A full buffer drops the item (counted); a store that is down
is logged once per outage, never with the text (user data), and the Space keeps serving.
/predict/batch is not queued: it is the retrain job's evaluation route (test texts) and bulk scoring.

The serving layer calls `queue_for_review(...)` for canary/stable disagreements in shadow mode.
"""
from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass

from feedback.store import FeedbackError
from inference_space.serving import redact

log = logging.getLogger("inference_space")
BUFFER = 256  # items waiting for the writer thread; beyond it the Space is queueing faster than the DB takes


@dataclass(frozen=True)
class ReviewItem:
    text: str
    predicted_label: str
    confidence: float | None
    reason: str
    suggested_label: str | None = None


def review_reason(prediction: dict, threshold: float, margin: float) -> str | None:
    """Why this prediction needs a reviewer ("low_confidence", "small_margin"), or None."""
    if prediction["confidence"] < threshold:
        return "low_confidence"
    top, second = sorted(prediction["scores"].values(), reverse=True)[:2]
    return "small_margin" if top - second < margin else None


def safe_reason(error: Exception, settings) -> str:
    """The store's own messages name no text and mask the password; another library's error (an
    SQLAlchemy statement error lists its parameters: the request's text) shows its type only."""
    if isinstance(error, FeedbackError):
        return redact(f"{type(error).__name__}: {error}", settings)
    return f"{type(error).__name__} (details withheld: they may hold the request's text)"


class ReviewQueue:
    """Writes review items to the store from one daemon thread. `recorder` is the Space's
    FeedbackRecorder (it opens the store lazily); `outcomes` counts queued/duplicate/full/dropped/failed."""

    def __init__(self, recorder, settings, outcomes=None):
        self.recorder, self.settings, self.outcomes = recorder, settings, outcomes
        self._buffer: queue.Queue[ReviewItem | None] = queue.Queue(BUFFER)
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._failing = False

    @property
    def enabled(self) -> bool:
        return self.settings.review_queue_max > 0

    def offer(self, texts: list[str], predictions: list[dict]) -> None:
        """Queue the uncertain ones among these answers (cheap: no I/O on the caller's thread)."""
        if not self.enabled:
            return
        for text, prediction in zip(texts, predictions):
            reason = review_reason(prediction, self.settings.review_threshold, self.settings.review_margin)
            if reason:
                self.put(ReviewItem(text, prediction["label"], prediction["confidence"], reason))

    def queue_for_review(self, text: str, predicted_label: str, confidence: float | None,
                         reason: str = "shadow_disagreement", suggested_label: str | None = None) -> None:
        """Queue one prediction whatever its confidence: e.g. stable's answer that the shadow
        canary disagreed with (`suggested_label`: the canary's label, shown to the reviewer)."""
        if self.enabled:
            self.put(ReviewItem(text, predicted_label, confidence, reason, suggested_label))

    def put(self, item: ReviewItem) -> None:
        self._ensure_writer()
        try:
            self._buffer.put_nowait(item)
        except queue.Full:
            self._count("dropped")

    def close(self) -> None:
        """Let the writer finish what is buffered (a few seconds at most: shutdown must not hang)."""
        if self._thread is None:
            return
        try:
            self._buffer.put(None, timeout=2)
        except queue.Full:  # a store that is down holds the writer: the daemon thread ends with the process
            return
        self._thread.join(timeout=10)

    def _ensure_writer(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._write_all, name="review-queue", daemon=True)
                self._thread.start()

    def _write_all(self) -> None:
        while (item := self._buffer.get()) is not None:
            self._count(self._write(item))

    def _write(self, item: ReviewItem) -> str:
        try:
            outcome = self.recorder.store().queue_for_review(
                text=item.text, label_type=self.recorder.label_type, predicted_label=item.predicted_label,
                reason=item.reason, confidence=item.confidence, suggested_label=item.suggested_label,
                max_pending=self.settings.review_queue_max)
        except Exception as error:  # noqa: BLE001 - the Space serves on whatever the database does
            if not self._failing:  # once per outage
                log.error("review queue: not queueing predictions while the feedback store fails: %s",
                          safe_reason(error, self.settings))
            self._failing = True
            return "failed"
        if self._failing:
            log.info("review queue: the feedback store answers again; queueing resumed")
        self._failing = False
        return outcome

    def _count(self, outcome: str) -> None:
        if self.outcomes is not None:
            self.outcomes.labels(outcome).inc()
