"""The inference Space: a FastAPI app serving one LABEL's classifier at one model revision.

    LABEL=urgency python -m inference_space        # uvicorn on $HOST:$PORT (127.0.0.1:7860)

Settings (environment; see settings.SpaceSettings): LABEL, MODEL_ID, MODEL_REVISION (default: the
newest v* tag by version), HF_ENDPOINT / HF_TOKEN (no token and no endpoint: the local hub at LOCALHUB_URL),
MAX_TEXT_CHARS, MAX_BATCH, INFERENCE_BACKEND (torch | onnx), FEEDBACK_DB_URL, REVIEW_THRESHOLD /
REVIEW_MARGIN / REVIEW_QUEUE_MAX (uncertain /predict answers queued for review), LOAD_ATTEMPTS, CACHE_DIR
(default $HF_HOME/inference_space or ~/.cache/inference_space), DATA_DIR (default
~/.cache/retrainspace: the SQLite feedback store when FEEDBACK_DB_URL is unset). It writes only
there, never into its code folder (a Space's code is read-only to its user).

Routes: POST /predict, POST /predict/batch, GET /health, POST /feedback, GET /metrics, GET /.

Upstream Sambodhan's clients work unchanged: POST /predict_<LABEL> (/predict_urgency,
/predict_department) is /predict; /predict takes {"text": "..."} (one prediction) or
{"text": [...]} (a list of predictions, in order, even for one text); GET / answers their
message, status ("Active"/"Inactive") and model_version (the served tag) besides our health.
TEXT_CLEANING (sambodhan | none, default sambodhan; see text_cleaning.py): texts are cleaned as
upstream's APIs and dataset preparation clean them before the model sees them.

Bad input: a body over MAX_REQUEST_BYTES (default 4 MiB) is refused with 413 before it is read
(Content-Length) or once the streamed bytes pass it; a text with a lone surrogate or a NUL is a
422 naming the field. Feedback-store failures answer 503 (database unavailable, Retry-After) or
500 with a generic message: the database's host, user and name go to the log only.
"""
