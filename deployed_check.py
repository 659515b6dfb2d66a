"""Before training: is the deployed side there to compare against? Seconds, not minutes.

A deployed model that cannot be scored makes the job refuse to promote, but only after training
and after waiting SPACE_WAKE_TIMEOUT_S. This check finds that out first: the API is reachable,
answers `/predict` (or Sambodhan's `/predict_urgency`) within seconds, and the answered label is
one of the LABEL's labels. `/health` is used when the Space has one. A sleeping Space is woken
and left to wake while the job trains; a paused or crashed one stops the run here, by name
(WAKE_DEPLOYED=true: a paused one is restarted for the run and paused again after it).
"""
from __future__ import annotations

import contextlib

from deployed_api import DeployedAPIError, DeployedModelClient
from hub import HubError, RepoNotFound, SpaceController

PROBE_TIMEOUT_S = 10.0
PROBE_TEXT = "The street light in our ward has been broken for a week."
STOPPED_STAGES = {"PAUSED", "STOPPED", "RUNTIME_ERROR", "BUILD_ERROR", "CONFIG_ERROR", "NO_APP_FILE", "DELETING"}
WAKING_STAGES = {"SLEEPING", "BUILDING", "APP_STARTING", "RUNNING_BUILDING", "RUNNING_APP_STARTING"}


class DeployedCheckError(RuntimeError):
    """The deployed model exists but cannot be scored; the message names the Space or URL and the fix."""


def deployed_version(cfg, hub) -> str | None:
    try:
        return hub.newest_version_tag(cfg.model_repo)
    except RepoNotFound:
        return None


def check_deployed_before_training(cfg, hub, log=print) -> dict | None:
    """What the deployed API answered (None when nothing is deployed or the Space is still waking).
    Raises DeployedCheckError when the comparison after training could not run."""
    tag = deployed_version(cfg, hub)
    if tag is None:
        log(f"[deployed] no version tag on {cfg.model_repo}: first deploy, nothing to check")
        return None
    stop = (f"A model is deployed ({cfg.model_repo}@{tag}) but could not be compared after training. "
            f"Stopped before training. Not promoting.")
    url = cfg.api_endpoint
    if not url:
        try:
            state = SpaceController(hub, cfg.inference_space).state()
        except HubError as error:
            raise DeployedCheckError(f"{error}. Set SPACE_REPO_ID or API_ENDPOINT. {stop}") from None
        if state.stage in STOPPED_STAGES:
            raise DeployedCheckError(
                f"inference Space {cfg.inference_space} is {state.stage}: it cannot answer. Restart it (Space "
                f"settings, or HfApi.restart_space), set WAKE_DEPLOYED=true (a PAUSED one is restarted for "
                f"the comparison and paused again), or point API_ENDPOINT at a running API. {stop}")
        if not state.url:
            raise DeployedCheckError(f"inference Space {cfg.inference_space} is {state.stage} and reports no URL: "
                                     f"restart it or set API_ENDPOINT. {stop}")
        url = state.url
        if state.stage in WAKING_STAGES:
            wake(cfg, url)
            log(f"[deployed] inference Space {cfg.inference_space} is {state.stage}: woken, training meanwhile; "
                f"the comparison waits up to SPACE_WAKE_TIMEOUT_S={cfg.space_wake_timeout_s:.0f}s")
            return None
    client = probe_client(cfg, url)
    try:
        if client.note:
            log(f"[deployed] {client.note}")
        answer = client.readiness(PROBE_TEXT)
        if answer.get("status") == "ok" and "label" not in answer:
            answer["label"] = client.predict_label(PROBE_TEXT)
    except DeployedAPIError as error:
        raise DeployedCheckError(f"deployed API at {url} failed the pre-training check: {error}. Check "
                                 f"API_ENDPOINT (a base URL or its /predict URL) or SPACE_REPO_ID. {stop}") from None
    finally:
        client.close()
    if answer.get("status") != "ok":
        log(f"[deployed] {url} /health says {answer.get('status')!r}; the comparison waits up to "
            f"SPACE_WAKE_TIMEOUT_S={cfg.space_wake_timeout_s:.0f}s")
        return answer
    label = answer["label"]
    if label not in cfg.labels:
        raise DeployedCheckError(
            f"deployed API at {url} answered label {label!r}, not one of LABEL={cfg.label}'s labels {cfg.labels}: "
            f"it serves another classifier. Set API_ENDPOINT/SPACE_REPO_ID to the {cfg.label} API. {stop}")
    log(f"[deployed] {url} answers ({answer['via']}, label {label!r}, version {answer.get('revision')})")
    return answer


@contextlib.contextmanager
def deployed_space_awake(cfg, hub, log=print):
    """WAKE_DEPLOYED=true and the inference Space is PAUSED: restart it for the block (the check
    before training then waits for it like for a sleeping one) and pause it again afterwards,
    whatever happened inside. Otherwise nothing."""
    space = SpaceController(hub, cfg.inference_space)
    if not cfg.wake_deployed or cfg.api_endpoint or deployed_version(cfg, hub) is None or not _paused(space):
        yield
        return
    log(f"[deployed] inference Space {cfg.inference_space} is PAUSED; WAKE_DEPLOYED=true: restarting it "
        "for the comparison, pausing it again after the run")
    try:
        space.restart()
        yield
    finally:
        try:
            space.pause()
            log(f"[deployed] inference Space {cfg.inference_space} paused again")
        except HubError as error:
            log(f"[deployed] could NOT pause {cfg.inference_space} again: {error}; pause it by hand")


def _paused(space: SpaceController) -> bool:
    try:
        return space.state().stage == "PAUSED"
    except HubError:  # no such Space: the check before training names it
        return False


def probe_client(cfg, url: str, timeout: float = PROBE_TIMEOUT_S) -> DeployedModelClient:
    return DeployedModelClient(url, token=cfg.token, timeout=min(cfg.deployed_timeout_s, timeout),
                               retries=min(cfg.deployed_retries, 1), backoff=0.5, label=cfg.label)


def wake(cfg, url: str) -> None:
    """One request to a sleeping Space wakes it; the answer does not matter."""
    client = probe_client(cfg, url, timeout=2)
    try:
        client.readiness(PROBE_TEXT)
    except DeployedAPIError:
        pass
    finally:
        client.close()
