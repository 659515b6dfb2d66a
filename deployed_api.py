"""Client of the deployed inference Space: the only module that does HTTP to it.

Scores texts through `/predict/batch` when the Space offers it, else through `/predict` with a
bounded pool of concurrent requests. Every request has a timeout and retries with backoff; a
text that still fails is reported by index, never silently dropped.

It also scores Sambodhan's inference Spaces: they have no `/health` (readiness is then one
`/predict` that answers a label, the version `GET /`'s `model_version`), the urgency Space serves
`/predict_urgency`, and their documented API_ENDPOINT is the full `.../predict` URL: a URL ending
in a predict route is split into the base URL and that route.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx

RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}
PREDICT_ROUTES = ("/predict", "/predict_urgency", "/predict_department")


def split_predict_url(url: str) -> tuple[str, str | None]:
    """('https://x.hf.space', '/predict_urgency') for 'https://x.hf.space/predict_urgency'; (url, None) otherwise."""
    url = url.rstrip("/")
    for route in PREDICT_ROUTES:
        if url.endswith(route):
            return url[: -len(route)], route
    return url, None


class DeployedAPIError(RuntimeError):
    """The deployed API could not be reached or answered nonsense."""


@dataclass
class DeployedScores:
    """Predicted label per text (None where the API failed) and why each failure happened."""

    labels: list[str | None]
    failures: dict[int, str] = field(default_factory=dict)
    mode: str = "batch"
    seconds: float = 0.0


class DeployedModelClient:
    def __init__(self, base_url: str, token: str | None = None, timeout: float = 30,
                 retries: int = 3, batch_size: int = 32, concurrency: int = 8, backoff: float = 0.5,
                 label: str | None = None):
        self.base_url, route = split_predict_url(base_url)
        self.predict_route = route or "/predict"
        # A route given in the URL is final; otherwise /predict, then /predict_<label> if that 404s.
        self.fallback_route = None if route or not label else f"/predict_{label}"
        self.note = (f"API_ENDPOINT {base_url} names the predict route: using base URL {self.base_url} "
                     f"and POST {route}" if route else None)
        self.retries, self.backoff = retries, backoff
        self.batch_size, self.concurrency = batch_size, concurrency
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.base_url, timeout=timeout, headers=headers)

    @classmethod
    def from_config(cls, cfg, base_url: str) -> "DeployedModelClient":
        return cls(base_url, token=cfg.token, timeout=cfg.deployed_timeout_s, retries=cfg.deployed_retries,
                   batch_size=cfg.deployed_batch_size, concurrency=cfg.deployed_concurrency, label=cfg.label)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "DeployedModelClient":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # --- low level --------------------------------------------------------------------
    def _request(self, method: str, path: str, **kwargs) -> httpx.Response:
        """One call with retries on connection errors, timeouts and retryable statuses."""
        last_error = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                response = self.http.request(method, path, **kwargs)
            except httpx.TransportError as error:
                last_error = f"{type(error).__name__}: {error}"
                continue
            if response.status_code not in RETRYABLE_STATUS:
                return response
            last_error = f"HTTP {response.status_code}"
        raise DeployedAPIError(f"{method} {self.base_url}{path} failed after {self.retries + 1} tries: {last_error}")

    def health(self) -> dict:
        response = self._request("GET", "/health")
        if response.status_code != 200:
            raise DeployedAPIError(f"GET {self.base_url}/health answered HTTP {response.status_code}")
        return _json(response, "/health")

    def readiness(self, probe_text: str) -> dict:
        """/health when the Space has one; else one /predict of `probe_text` (Sambodhan's Spaces):
        {'status': 'ok', 'label': ..., 'revision': GET /'s model_version} once it answers a label."""
        response = self._request("GET", "/health")
        if response.status_code == 200:
            return _json(response, "/health") | {"via": "/health"}
        if response.status_code not in (404, 405):
            raise DeployedAPIError(f"GET {self.base_url}/health answered HTTP {response.status_code}")
        label = self._predict_one(probe_text)
        return {"status": "ok", "label": label, "revision": self._root_version(), "via": self.predict_route}

    def _root_version(self) -> str | None:
        try:
            data = self._request("GET", "/").json()
        except (DeployedAPIError, ValueError):
            return None
        version = data.get("model_version") if isinstance(data, dict) else None
        return version if isinstance(version, str) and version != "unknown" else None

    def wait_until_ready(self, timeout: float, poll: float = 2.0, probe_text: str = "ready?") -> dict:
        """Wait for a sleeping, building or loading Space until it is ready (see `readiness`)."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while True:
            try:
                health = self.readiness(probe_text)
                if health.get("status") == "ok":
                    return health
                last = f"status {health.get('status')!r}"
            except DeployedAPIError as error:
                last = str(error)
            if time.monotonic() >= deadline:
                raise DeployedAPIError(f"deployed API at {self.base_url} not ready after {timeout:.0f}s ({last})")
            time.sleep(poll)

    # --- scoring ------------------------------------------------------------------------
    def predict_labels(self, texts: list[str]) -> DeployedScores:
        """Through /predict/batch (ours); else a list of texts to the predict route (Sambodhan's
        /predict takes {"text": [...]}); else concurrent single-text requests."""
        started = time.perf_counter()
        scores = self._predict_batched(texts, self._post_batch, "batch")
        if scores is None:
            scores = self._predict_batched(texts, self._post_list, "list")
        if scores is None:
            scores = self._predict_one_by_one(texts)
        scores.seconds = time.perf_counter() - started
        return scores

    def _predict_batched(self, texts: list[str], post, mode: str) -> DeployedScores | None:
        """None when the Space lacks this way of batching (then the caller falls back).
        Chunks go out `concurrency` at a time: the Space batches the forward pass, the pool hides
        the round trips."""
        starts = list(range(0, len(texts), self.batch_size))
        first = self._predict_chunk(texts[: self.batch_size], post)  # finds out whether the Space has it
        if first is None:
            return None
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            rest = list(pool.map(lambda start: self._predict_chunk(texts[start:start + self.batch_size], post),
                                 starts[1:]))
        labels: list[str | None] = []
        failures: dict[int, str] = {}
        for start, chunk in zip(starts, [first, *rest]):
            labels.extend(chunk.labels)
            failures.update({start + i: why for i, why in chunk.failures.items()})
        return DeployedScores(labels, failures, mode=mode)

    def _predict_chunk(self, chunk: list[str], post) -> DeployedScores | None:
        try:
            labels = post(chunk)
            return None if labels is None else DeployedScores(labels)
        except DeployedAPIError:
            # A failing batch is retried text by text so one bad text cannot sink the others.
            return self._predict_one_by_one(chunk)

    def _post_batch(self, chunk: list[str]) -> list[str] | None:
        response = self._request("POST", "/predict/batch", json={"texts": chunk})
        if response.status_code in (404, 405):
            return None
        return _batch_labels(response, len(chunk))

    def _post_list(self, chunk: list[str]) -> list[str] | None:
        route, response = self._post_predict(chunk)
        if response.status_code in (404, 405, 422):  # no such route, or it takes one text only (ours)
            return None
        if response.status_code != 200:
            raise DeployedAPIError(f"POST {self.base_url}{route} answered HTTP {response.status_code}")
        try:
            data = response.json()
        except ValueError:
            raise DeployedAPIError(f"{route} answered malformed JSON: {response.text[:200]!r}") from None
        # Sambodhan answers one object, not a list, for a list of one text.
        predictions = [data] if isinstance(data, dict) and len(chunk) == 1 else data
        return _labels_of(predictions, len(chunk), route)

    def _post_predict(self, text: str | list[str]) -> tuple[str, httpx.Response]:
        """POST to the predict route; on a 404 try /predict_<label> once and keep it if it answers."""
        route = self.predict_route
        response = self._request("POST", route, json={"text": text})
        if response.status_code == 404 and self.fallback_route and route != self.fallback_route:
            route = self.fallback_route
            response = self._request("POST", route, json={"text": text})
            if response.status_code != 404:
                self.predict_route = route  # found: the other requests go there directly
        return route, response

    def predict_label(self, text: str) -> str:
        """The label of one text (one request, with retries)."""
        return self._predict_one(text)

    def _predict_one(self, text: str) -> str:
        route, response = self._post_predict(text)
        if response.status_code != 200:
            raise DeployedAPIError(f"POST {self.base_url}{route} answered HTTP {response.status_code}: "
                                   f"{response.text[:200]}")
        label = _json(response, route).get("label")
        if not isinstance(label, str):
            raise DeployedAPIError(f"POST {route} answered without a string 'label'")
        return label

    def _predict_one_by_one(self, texts: list[str]) -> DeployedScores:
        def attempt(text: str) -> str | Exception:
            try:
                return self._predict_one(text)
            except DeployedAPIError as error:
                return error

        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            results = list(pool.map(attempt, texts))
        labels = [r if isinstance(r, str) else None for r in results]
        failures = {i: str(r) for i, r in enumerate(results) if isinstance(r, Exception)}
        return DeployedScores(labels, failures, mode="single")


def _json(response: httpx.Response, path: str) -> dict:
    try:
        data = response.json()
    except ValueError:
        raise DeployedAPIError(f"{path} answered malformed JSON: {response.text[:200]!r}") from None
    if not isinstance(data, dict):
        raise DeployedAPIError(f"{path} answered {type(data).__name__}, expected a JSON object")
    return data


def _batch_labels(response: httpx.Response, expected: int) -> list[str]:
    if response.status_code != 200:
        raise DeployedAPIError(f"POST /predict/batch answered HTTP {response.status_code}: {response.text[:200]}")
    return _labels_of(_json(response, "/predict/batch").get("predictions"), expected, "/predict/batch")


def _labels_of(predictions, expected: int, route: str) -> list[str]:
    if not isinstance(predictions, list) or len(predictions) != expected:
        raise DeployedAPIError(f"{route} returned {len(predictions) if isinstance(predictions, list) else 'no'} "
                               f"predictions for {expected} texts")
    labels = [p.get("label") if isinstance(p, dict) else None for p in predictions]
    if not all(isinstance(label, str) for label in labels):
        raise DeployedAPIError(f"{route} returned a prediction without a string 'label'")
    return labels
