"""The inference Space app: /predict, /predict/batch, /health, /feedback, /metrics."""
from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import AfterValidator, BaseModel, Discriminator, Field, Tag

from feedback.store import DatabaseUnavailable, FeedbackStore, default_db_url
from inference_space.body_limit import BodyLimit
from inference_space.metrics import ServiceMetrics
from inference_space.reports import FeedbackRecorder, FeedbackRejected
from inference_space.review_queue import ReviewQueue
from inference_space.serving import ModelNotReady, ModelServer, model_server, redact
from inference_space.settings import SpaceSettings
from inference_space.versions import log_disagreement
from text_cleaning import clean, unicode_problem

log = logging.getLogger("inference_space")


def usable_text(value: str) -> str:
    problem = unicode_problem(value)
    if problem:
        raise ValueError(problem)
    return value


# Every text field: a lone surrogate or a NUL is the client's error (422), never a 500 or a 503.
Text = Annotated[str, AfterValidator(usable_text)]


# One text, or a list of them as upstream Sambodhan's clients send (answered with a list). The
# tags keep validation errors on one branch: "text: Input should be a valid string", not both.
UNION_TAGS = ("one", "list")
TextOrTexts = Annotated[Annotated[Text, Tag("one")] | Annotated[list[Text], Tag("list")],
                        Discriminator(lambda value: "list" if isinstance(value, list) else "one")]


class PredictRequest(BaseModel):
    text: TextOrTexts


class BatchRequest(BaseModel):
    texts: list[Text]


class FeedbackRequest(BaseModel):
    text: Text
    complaint_id: Text | None = Field(None, max_length=200)
    predicted_label: Text
    corrected_label: Text | None = None
    reporter: Text | None = Field(None, max_length=200)


def invalid(message: str) -> HTTPException:
    return HTTPException(status_code=422, detail=message)


def check_text(text: str, field: str, max_chars: int) -> None:
    if not text.strip():
        raise invalid(f"{field}: the text is empty; send the complaint text")
    if len(text) > max_chars:
        raise invalid(f"{field}: the text has {len(text)} characters, more than MAX_TEXT_CHARS={max_chars}; shorten it")


def model_input(text: str, field: str, settings: SpaceSettings) -> str:
    """The text as the model sees it: checked, then cleaned the TEXT_CLEANING way."""
    check_text(text, field, settings.max_text_chars)
    cleaned = clean(text, settings.text_cleaning)
    if not cleaned:
        raise invalid(f"{field}: nothing is left once TEXT_CLEANING={settings.text_cleaning} removed URLs and "
                      "HTML tags; send the complaint text")
    return cleaned


def batch_input(texts: list[str], settings: SpaceSettings, field: str = "texts") -> list[str]:
    if not texts:
        raise invalid(f"{field}: the list is empty; send at least one text")
    if len(texts) > settings.max_batch:
        raise invalid(f"{field}: {len(texts)} texts, more than MAX_BATCH={settings.max_batch}; split the request")
    return [model_input(text, f"{field}[{i}]", settings) for i, text in enumerate(texts)]


def check_feedback(report: FeedbackRequest, settings: SpaceSettings) -> None:
    check_text(report.text, "text", settings.max_text_chars)
    for field in ("predicted_label", "corrected_label"):
        value = getattr(report, field)
        if value is not None and value not in settings.labels:
            raise invalid(f"{field}: {value!r} is not one of the LABEL={settings.label} labels {settings.labels}")


def readable(error: RequestValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"] if p != "body" and p not in UNION_TAGS) or "body"
        parts.append(f"{where}: {item['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)


def create_app(settings: SpaceSettings, hub=None, feedback_store=None, server: ModelServer | None = None,
               on_disagreement=None) -> FastAPI:
    """The app for these settings. `hub` defaults to hub.HubClient on the settings' endpoint;
    tests pass a wrapped one. The model starts loading when the app starts, unless `server`
    (serving.model_server()) started it already. With a canary, `on_disagreement(text,
    stable_prediction, canary_prediction)` hears of each text the two versions label differently
    (default: a log line, and the stable answer queued for review)."""
    server = server or model_server(settings, hub)
    hub = server.hub
    # Without FEEDBACK_DB_URL: the store's default file under DATA_DIR, the one prepare_dataset reads.
    feedback_url = settings.feedback_db_url or default_db_url()
    recorder = FeedbackRecorder(feedback_url, settings.label, feedback_store)
    metrics = ServiceMetrics(server, recorder.pending_reviews)
    review = ReviewQueue(recorder, settings, metrics.review_queue)  # the serving layer's queue_for_review

    def queue_disagreement(text: str, stable_prediction: dict, canary_prediction: dict) -> None:
        log_disagreement(text, stable_prediction, canary_prediction)
        review.queue_for_review(text, stable_prediction["label"], stable_prediction.get("confidence"),
                                suggested_label=canary_prediction["label"])

    server.on_disagreement = on_disagreement or queue_disagreement

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        server.start_loading()
        yield
        review.close()

    app = FastAPI(title=f"grievance {settings.label} classifier", lifespan=lifespan)
    app.state.server, app.state.metrics, app.state.recorder = server, metrics, recorder
    app.state.review_queue = review
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)
    app.include_router(retrain_admin(settings, feedback_url, hub))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError):
        return JSONResponse(status_code=422, content={"detail": readable(error)})

    @app.exception_handler(ModelNotReady)
    async def not_ready(request: Request, error: ModelNotReady):
        detail = f"model not loaded ({server.state.status}): {error}"
        return JSONResponse(status_code=503, content={"detail": detail},
                            headers={"Retry-After": str(settings.retry_after_s)})

    upstream_route = f"/predict_{settings.label}"  # upstream Sambodhan's name, e.g. /predict_urgency

    @app.get("/")
    def index() -> dict:
        health = server.health()
        return {  # message, status, model_version: what upstream Sambodhan's clients read here
            "message": f"{app.title} is running.", "status": "Active" if health["status"] == "ok" else "Inactive",
            "model_version": (health["revision"] if health["status"] == "ok" else None) or "unknown",
            "app": app.title, "routes": ["/predict", upstream_route, "/predict/batch", "/health", "/feedback",
                                         "/metrics"],
            "health": health,
        }

    @app.get("/health")
    def health() -> dict:
        return server.health()

    async def classify(texts: list[str], endpoint: str, review_uncertain: bool = False) -> list[dict]:
        with metrics.latency.labels(endpoint).time():
            predictions = await run_in_threadpool(server.predict, texts)
        metrics.count_predictions(predictions)
        if review_uncertain:
            review.offer(texts, predictions)
        return predictions

    @app.post("/predict")
    async def predict(request: PredictRequest) -> dict | list[dict]:
        """One text: one prediction. A list of texts: a list of predictions, in order."""
        if isinstance(request.text, list):
            return await classify(batch_input(request.text, settings, "text"), "predict", review_uncertain=True)
        [prediction] = await classify([model_input(request.text, "text", settings)], "predict", review_uncertain=True)
        return prediction

    app.add_api_route(upstream_route, predict, methods=["POST"], summary=f"Same as /predict ({upstream_route}).")

    @app.post("/predict/batch")
    async def predict_batch(request: BatchRequest) -> dict:
        return {"predictions": await classify(batch_input(request.texts, settings), "predict_batch")}

    @app.post("/feedback", status_code=201)
    async def feedback(report: FeedbackRequest) -> dict:
        check_feedback(report, settings)
        try:
            report_id = await run_in_threadpool(recorder.record, **report.model_dump())
        except FeedbackRejected as error:
            if error.cause:  # the database's own words name its host and user: logs only
                log.error("feedback store failed: %s", redact(error.cause, settings))
            headers = {"Retry-After": str(settings.retry_after_s)} if error.status == 503 else None
            raise HTTPException(status_code=error.status, detail=str(error), headers=headers) from None
        metrics.feedback_reports.inc()
        if report.corrected_label is not None:
            await run_in_threadpool(server.judge_feedback, report.text, report.corrected_label)
        return {"id": report_id, "status": "recorded"}

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def retrain_admin(settings: SpaceSettings, url: str, hub):
    """POST /admin/retrain and GET /admin/status (issue 8), answering 503 until ADMIN_TOKEN is set.
    A database that is down or a folder it cannot write costs the admin routes only (503); a bad
    URL or a schema conflict is raised (FeedbackError): the Space does not start."""
    from configs import load_config
    from feedback.admin import admin_router

    try:
        store = FeedbackStore(url)
    except DatabaseUnavailable:  # a database down at start-up must not stop predictions; admin answers 503
        store = FeedbackStore(url, create=False)
    # The Space's own CANARY_SHARE is read by SpaceSettings (a bad one leaves the canary unloaded): the
    # job's setting of that name must not refuse it and stop the Space.
    return admin_router(load_config({"label": settings.label, "canary_share": 0}), store, hub)
