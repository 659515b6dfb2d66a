"""Prometheus metrics of one app instance (its own registry, so several apps can share a process)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily


def retrain_outcome(metadata: dict | None) -> tuple[float | None, bool | None]:
    """(ΔF1, promoted) recorded by the retrain job in metadata.json; None where absent."""
    metadata = metadata or {}
    comparison, decision = metadata.get("comparison") or {}, metadata.get("decision") or {}
    delta = comparison.get("delta_f1") if isinstance(comparison, dict) else None
    promote = decision.get("promote") if isinstance(decision, dict) else None
    return (float(delta) if isinstance(delta, (int, float)) else None,
            promote if isinstance(promote, bool) else None)


class ServingCollector:
    """Gauges read from the serving state at scrape time, so they never go stale."""

    def __init__(self, server, pending_reviews=None):
        self.server, self.pending_reviews = server, pending_reviews

    def collect(self):
        state = self.server.state
        yield GaugeMetricFamily("inference_model_ready", "1 when the model is loaded and serving.",
                                value=1.0 if state.status == "ok" else 0.0)
        if state.model is not None:
            info = GaugeMetricFamily("inference_model_info", "The model version served (value is always 1).",
                                     labels=["model_id", "revision", "commit", "backend"])
            info.add_metric([self.server.settings.model_repo, state.model.revision, state.model.commit,
                             self.server.settings.inference_backend], 1.0)
            yield info
            delta, promoted = retrain_outcome(state.model.metadata)
            if delta is not None:
                yield GaugeMetricFamily("inference_last_retrain_delta_f1",
                                        "Macro-F1 gain of the served version over the one it replaced.", value=delta)
            if promoted is not None:
                yield GaugeMetricFamily("inference_last_retrain_promoted",
                                        "1 if the retrain run that made the served version promoted it.",
                                        value=float(promoted))
        yield from version_metrics(self.server.version_figures())
        pending = self.pending_reviews() if self.pending_reviews else None
        if pending is not None:
            yield GaugeMetricFamily("inference_feedback_pending_reviews",
                                    "Reports and queued predictions waiting for review.", value=pending)


def version_metrics(versions: dict):
    """Per-version figures (stable, and a canary or shadow while one is loaded), labelled by role and revision."""
    labels = ["role", "revision"]
    counters = {name: CounterMetricFamily(f"inference_version_{name}", help, labels=labels) for name, help in (
        ("answered", "Requests this version answered."), ("scored", "Texts this version scored."),
        ("compared", "Texts both versions scored (canary only)."),
        ("agreed", "Texts both versions scored and labelled the same (canary only)."),
        ("feedback_labelled", "Feedback reports with a corrected label, scored by this version."),
        ("feedback_correct", "Of those, reports where this version's label is the corrected one."))}
    latency = SummaryMetricFamily("inference_version_forward_seconds", "Forward passes of this version.",
                                  labels=labels)
    for role, figures in versions.items():
        key = [role, figures["revision"] or "none"]
        for name, family in counters.items():
            family.add_metric(key, figures[name])
        latency.add_metric(key, count_value=figures["forward_calls"], sum_value=figures["forward_seconds"])
    yield from counters.values()
    yield latency


class ServiceMetrics:
    def __init__(self, server, pending_reviews=None):
        self.registry = CollectorRegistry()
        self.predictions = Counter("inference_predictions", "Texts classified, by predicted label.",
                                   ["label"], registry=self.registry)
        self.feedback_reports = Counter("inference_feedback_reports", "Misclassification reports recorded.",
                                        registry=self.registry)
        self.review_queue = Counter("inference_review_queue", "Uncertain predictions offered to the review "
                                    "queue, by outcome (queued, duplicate, full, dropped, failed).",
                                    ["outcome"], registry=self.registry)
        self.latency = Histogram("inference_request_seconds", "Time to answer a prediction request.",
                                 ["endpoint"], registry=self.registry)
        self.registry.register(ServingCollector(server, pending_reviews))

    def count_predictions(self, predictions: list[dict]) -> None:
        for prediction in predictions:
            self.predictions.labels(prediction["label"]).inc()
