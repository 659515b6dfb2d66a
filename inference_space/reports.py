"""The /feedback adapter: the feedback store is opened on first use, so a database that is down
costs the feedback endpoint only, never the predictions."""
from __future__ import annotations

import threading


class FeedbackUnavailable(RuntimeError):
    """The feedback store cannot be opened or written."""


class FeedbackRecorder:
    def __init__(self, url: str, store=None):
        self.url, self._store, self._lock = url, store, threading.Lock()

    def store(self):
        with self._lock:
            if self._store is None:
                from feedback.store import FeedbackStore

                self._store = FeedbackStore(self.url)
            return self._store

    def record(self, **report) -> int:
        return self.store().record_report(**report)

    def pending_reviews(self) -> int | None:
        """Reports waiting for review, when the store can tell (None otherwise: metric omitted)."""
        count = getattr(self._store, "count_pending", None)
        try:
            return count() if count else None
        except Exception:
            return None
