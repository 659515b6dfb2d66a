"""Canary and shadow releases (PROMOTION_MODE=canary|shadow).

A promoted version is started next to the served one: the inference Space loads both
(CANARY_REVISION, CANARY_SHARE, CANARY_MODE) and reports each version's figures in /health. The
next run, or `train_model.py canary`, completes it from those figures: MODEL_REVISION moves to the
canary, or the canary is removed. Either way the stable version keeps serving until the change is
verified, and a canary that cannot load is removed again. `train_model.py rollback` during a canary
aborts it.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Callable

from deploy import (
    REVISION_VARIABLE,
    DeployError,
    restart_until,
    restart_with_rollback,
    serve_revision,
    wait_or_undo,
)
from deployed_api import DeployedAPIError, DeployedModelClient
from hub import HubClient, HubError, SpaceController, SpaceNotFound, SpaceState
from interrupts import JobInterrupted, deferred_signals

CANARY_REVISION, CANARY_SHARE, CANARY_MODE = "CANARY_REVISION", "CANARY_SHARE", "CANARY_MODE"
CANARY_VARIABLES = (CANARY_REVISION, CANARY_SHARE, CANARY_MODE)
ACTIONS = ("decide", "promote", "abort")


def record_path(tag: str) -> str:
    """Where a canary's decision record lives in the model repo (on main: a version's tag never moves)."""
    return f"canary/{tag}.json"


def start_canary(space: SpaceController, cfg, tag: str, stable: str) -> dict:
    """Load `tag` next to `stable` (pinned, so the new tag does not become the stable version) and
    wait until /health shows both. A canary that does not load is removed again, and DeployError
    says so: the stable version serves alone. A signal during the wait (up to SERVING_TIMEOUT_S, far
    beyond the platform's grace period) removes the canary and restarts the Space at once, unverified."""
    space.set_variable(REVISION_VARIABLE, stable)
    space.set_variable(CANARY_MODE, cfg.promotion_mode)
    space.set_variable(CANARY_SHARE, str(cfg.canary_share))
    space.set_variable(CANARY_REVISION, tag)
    return wait_or_undo(lambda: restart_until(space, cfg, lambda health: canary_serving(health, tag, stable),
                                              f"load the {cfg.promotion_mode} {tag} next to {stable}"),
                        f"the {cfg.promotion_mode} {tag} to load",
                        undo_now=lambda: remove_canary_now(space, tag, stable),
                        undo=lambda: remove_canary(space, cfg, stable),
                        undone=f"the canary was removed: the Space serves {stable} alone",
                        undo_name="removing the canary")


def canary_serving(health: dict, tag: str, stable: str) -> bool:
    """Both versions loaded; a canary that failed to load stops the wait at once."""
    canary = health.get("canary") or {}
    if canary.get("revision") == tag and canary.get("status") == "error":
        raise DeployError(f"the canary {tag} failed to load in the inference Space: {canary.get('error')}")
    return health.get("revision") == stable and canary.get("revision") == tag and canary.get("status") == "ok"


def drop_canary_variables(space: SpaceController, state: SpaceState) -> None:
    for key in CANARY_VARIABLES:
        if key in state.variables:
            space.delete_variable(key)


def remove_canary_now(space: SpaceController, tag: str, stable: str) -> str:
    """Remove the canary variables and restart the Space without waiting for it; returns what was
    done, for the summary."""
    try:
        drop_canary_variables(space, space.state())
        space.restart()
    except HubError as error:
        return f"removing the canary {tag} FAILED ({error}); {CANARY_REVISION} may still name it"
    return f"the canary {tag} was removed and the Space restarted (not waited for): it serves {stable} alone"


def remove_canary(space: SpaceController, cfg, stable: str) -> dict:
    drop_canary_variables(space, space.state())
    return serve_revision(space, cfg, stable)


def promote_canary(space: SpaceController, cfg, tag: str, stable: str) -> dict:
    """MODEL_REVISION moves to the canary, which then serves alone; if it never does, the stable
    version is served again and DeployError says so."""
    drop_canary_variables(space, space.state())
    return restart_with_rollback(space, cfg, tag, stable)


def decide_canary(cfg, tag: str, stable: str, health: dict | None, action: str = "decide") -> dict:
    """The decision record: promote, abort, or wait for more labelled feedback. Accuracy is on the
    same reports for both versions (the Space scores each reported text with both)."""
    versions = (health or {}).get("versions") or {}
    canary = (health or {}).get("canary") or {}
    labelled = (versions.get("canary") or {}).get("feedback_labelled") or 0
    stable_accuracy = (versions.get("stable") or {}).get("feedback_accuracy")
    canary_accuracy = (versions.get("canary") or {}).get("feedback_accuracy")
    rule = (f"promote iff at least CANARY_MIN_FEEDBACK={cfg.canary_min_feedback} labelled feedback reports and "
            f"canary accuracy >= stable accuracy - CANARY_MAX_ACCURACY_DROP={cfg.canary_max_accuracy_drop}")
    if action != "decide":
        outcome = "promote" if action == "promote" else "abort"
        command = "rollback" if action == "rollback" else f"canary {action}"
        reasons = [f"{outcome} by command (train_model.py {command})"]
    elif canary.get("revision") != tag or canary.get("status") != "ok":
        outcome = "abort"
        reasons = [f"the inference Space does not serve the canary {tag} "
                   f"({canary.get('status') or 'not loaded'}: {canary.get('error')})"]
    elif labelled < cfg.canary_min_feedback or stable_accuracy is None or canary_accuracy is None:
        outcome, reasons = "wait", [f"{labelled} of {cfg.canary_min_feedback} labelled feedback reports so far"]
    else:
        drop = stable_accuracy - canary_accuracy
        outcome = "promote" if drop <= cfg.canary_max_accuracy_drop else "abort"
        reasons = [f"accuracy on {labelled} labelled feedback reports: canary {canary_accuracy:.4f}, "
                   f"stable {stable_accuracy:.4f} (drop {drop:+.4f}, allowed {cfg.canary_max_accuracy_drop})"]
    return {"version": tag, "stable": stable, "mode": canary.get("mode"), "share": canary.get("share"),
            "action": action, "outcome": outcome, "reasons": reasons, "rule": rule, "figures": versions,
            "decided_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def space_health(cfg, state: SpaceState) -> dict:
    url = cfg.api_endpoint or state.url
    if not url:
        raise DeployError(f"inference Space {cfg.inference_space} is {state.stage} and reports no URL: cannot "
                          "read the canary's figures; restart it or set API_ENDPOINT")
    try:
        with DeployedModelClient.from_config(cfg, url) as client:
            return client.health()
    except DeployedAPIError as error:
        raise DeployError(f"cannot read the canary's figures from {cfg.inference_space}: {error}") from error


def complete_canary(cfg, hub: HubClient, action: str = "decide",
                    on_decided: Callable[[dict], None] = lambda record: None) -> dict | None:
    """Decide the canary the inference Space runs, act on it, and add the decision record to the
    model repo. None when there is no canary; a record with outcome 'wait' when it needs more feedback.
    `on_decided` hears of the record before it is acted on (the same dict, completed afterwards)."""
    space = SpaceController(hub, cfg.inference_space)
    try:
        state = space.state()
    except SpaceNotFound:  # API_ENDPOINT without a Space of ours: nothing can run a canary
        return None
    if not state.variables.get(CANARY_REVISION):
        return None
    record = canary_record(cfg, state, action)
    on_decided(record)
    tag, stable = record["version"], record["stable"]
    if record["outcome"] == "promote":
        return carry_out(cfg, hub, record, lambda: promote_canary(space, cfg, tag, stable))
    if record["outcome"] == "abort":
        return carry_out(cfg, hub, record, lambda: remove_canary(space, cfg, stable))
    return record


def abort_for_rollback(cfg, hub: HubClient, space: SpaceController, state: SpaceState, to: str) -> dict:
    """`train_model.py rollback` during a canary: the canary is aborted (its decision record says
    so) and `to` serves alone."""
    return carry_out(cfg, hub, canary_record(cfg, state, "rollback"), lambda: remove_canary(space, cfg, to))


def canary_record(cfg, state: SpaceState, action: str) -> dict:
    """The decision record for the canary `state` names, from the Space's figures (an operator's
    promote, abort or rollback does not need them)."""
    try:
        health = space_health(cfg, state)
    except DeployError:
        if action == "decide":
            raise
        health = None
    stable = state.variables.get(REVISION_VARIABLE) or (health or {}).get("revision")
    return decide_canary(cfg, state.variables[CANARY_REVISION], stable, health, action)


def carry_out(cfg, hub: HubClient, record: dict, serve: Callable[[], dict]) -> dict:
    """`serve()` makes the Space serve one version and returns its /health; then the record goes to
    the model repo. A SIGTERM waits until the variables name one version and the Space restarts;
    the wait for it to serve is interruptible (deploy.serve_revision): the record is still written,
    saying that serving was not confirmed, and the signal then ends the run."""
    with deferred_signals():
        try:
            record["serving"] = serve().get("revision")
        except JobInterrupted as interrupted:
            raise record_interruption(cfg, hub, record, interrupted) from None
        write_record(cfg, hub, record)
    return record


def record_interruption(cfg, hub: HubClient, record: dict, interrupted: JobInterrupted) -> JobInterrupted:
    """Write the record of an interrupted completion; returns the interruption to raise (naming a
    record that could not be written: a HubError now must not turn the stop into a failure)."""
    record.update(serving=None, interrupted=True)
    record["reasons"].append(f"{interrupted} while the Space restarted: serving not confirmed")
    try:
        write_record(cfg, hub, record)
    except HubError as error:
        note = f"the decision record {record_path(record['version'])} was NOT written: {error}"
        return JobInterrupted(interrupted.signum, DeployError(f"{interrupted.during}; {note}" if interrupted.during
                                                              else note))
    return interrupted


def write_record(cfg, hub: HubClient, record: dict) -> None:
    hub.upload_file(cfg.model_repo, record_path(record["version"]), json.dumps(record, indent=2).encode(),
                    f"retrainspace: canary {record['version']} {record['outcome']}")
