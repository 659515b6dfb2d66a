"""The /feedback adapter over feedback.store.FeedbackStore. The store is opened on first use, so
a database that is down costs the feedback endpoint only, never the predictions."""
from __future__ import annotations

import threading

from feedback.store import DatabaseUnavailable, DuplicateReport, FeedbackStore, InvalidReport, SchemaConflict


class FeedbackRejected(RuntimeError):
    """The report was not recorded; `status` is the HTTP answer (409 duplicate, 422 invalid,
    503 database unavailable, 500 any other store failure). The message is safe to send: it
    never names the database, its host or its user; `cause` holds the detail for the logs."""

    def __init__(self, status: int, message: str, cause: str | None = None):
        super().__init__(message)
        self.status, self.cause = status, cause


def rejection(error: Exception) -> FeedbackRejected:
    if isinstance(error, DuplicateReport):
        return FeedbackRejected(409, str(error))
    if isinstance(error, InvalidReport):
        return FeedbackRejected(422, str(error))
    if isinstance(error, SchemaConflict):  # names tables and columns, never the server; permanent
        return FeedbackRejected(500, str(error))
    cause = f"{type(error).__name__}: {error}"
    if isinstance(error, DatabaseUnavailable):
        return FeedbackRejected(503, "the feedback database is unavailable; the report was not recorded, "
                                     "try again later", cause)
    return FeedbackRejected(500, "the feedback store failed; the report was not recorded. "
                                 "The Space's logs say why", cause)


class FeedbackRecorder:
    def __init__(self, url: str, label_type: str, store=None):
        self.url, self.label_type, self._store, self._lock = url, label_type, store, threading.Lock()

    def store(self):
        with self._lock:
            if self._store is None:
                self._store = FeedbackStore(self.url)
            return self._store

    def record(self, **report) -> int:
        try:
            return self.store().record_report(label_type=self.label_type, **report)
        except Exception as error:
            raise rejection(error) from None

    def pending_reviews(self) -> int | None:
        """Reports of this label type waiting for review, once the store is open (else None)."""
        count = getattr(self._store, "pending_count", None)
        try:
            return count(self.label_type) if count else None
        except Exception:  # a scrape must not fail because the database is down
            return None
