"""Fill the embedded local hub with what the loop needs, and run the demo.

    python -m localhub seed [--label urgency] [--base-model e5|tiny]
    python -m localhub demo [--label urgency] [--base-model e5|tiny]

seed (idempotent): dataset repos tagged v1 from data/complaints, an offline base model, a first
deployed model (promoted by the real job, run on 60 rows), and the two local Spaces per LABEL
(inference API bound to `python -m inference_space`, retrain job bound to `python train_model.py`).
demo: seed, then restart the retrain Space exactly as the Restart button does, follow its log
until it pauses itself, and print where the summary, metadata.json and the W&B offline run are.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

import train_model
from configs import DEFAULT_NAMESPACE, JobConfig

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DATA = PROJECT_ROOT / "data" / "complaints"
SPLIT_FILES = ("train.csv", "validation.csv", "test.csv", "README.md")
BASE_MODELS = {"e5": "multilingual-e5-small", "tiny": "tiny-bert"}
MODEL_CACHE = Path.home() / ".cache" / "retrainspace"
# The first deployed model is deliberately small-data so the demo has something to beat.
FIRST_MODEL_TRAIN_ROWS = 60
# The demo trains with the job's own defaults (RECIPE=auto: a step floor, lr by encoder width,
# sparse word-embedding updates on a CPU); extra variables per base model go here.
TRAINING_VARIABLES: dict[str, dict[str, str]] = {"e5": {}, "tiny": {}}


def say(message: str) -> None:
    print(f"[seed] {message}", flush=True)


def seed_dataset(hub, repo_id: str) -> str:
    if hub.repo_exists(repo_id, "dataset") and hub.newest_version_tag(repo_id, "dataset"):
        return hub.newest_version_tag(repo_id, "dataset")
    hub.ensure_repo(repo_id, "dataset")
    with tempfile.TemporaryDirectory() as folder:
        for name in SPLIT_FILES:
            (Path(folder) / name).write_bytes((SAMPLE_DATA / name).read_bytes())
        commit = hub.upload_folder(repo_id, Path(folder), "sample complaints (group-disjoint splits)", "dataset")
    hub.create_tag(repo_id, "v1", commit, "dataset", message="seed: sample data")
    say(f"dataset {repo_id}@v1")
    return "v1"


def build_base_model(kind: str) -> Path:
    folder = MODEL_CACHE / BASE_MODELS[kind]
    if kind == "e5":
        from offline_models.e5 import convert_e5

        return convert_e5(folder)
    if not (folder / "config.json").exists():
        import pandas as pd

        from offline_models.tiny import build_tiny_model

        texts = pd.concat(pd.read_csv(SAMPLE_DATA / f) for f in SPLIT_FILES[:3]).text.tolist()
        build_tiny_model(folder, texts)
    return folder


def seed_base_model(hub, kind: str, namespace: str) -> str:
    repo_id = f"{namespace}/{BASE_MODELS[kind]}"
    if hub.repo_exists(repo_id) and hub.list_files(repo_id, "main"):
        return repo_id
    say(f"building the offline base model {kind} ...")
    folder = build_base_model(kind)
    hub.ensure_repo(repo_id)
    hub.upload_folder(repo_id, folder, f"offline base model ({kind})")
    say(f"base model {repo_id}")
    return repo_id


def seed_first_model(hub, cfg: JobConfig) -> str:
    """Run the real job once on FIRST_MODEL_TRAIN_ROWS rows with a first-deploy floor of 0: it is
    promoted through the job's own decide/deploy path (one commit, one tag, restart, verify)."""
    existing = hub.newest_version_tag(cfg.model_repo) if hub.repo_exists(cfg.model_repo) else None
    if existing:
        return existing
    say(f"running the job for a first deployed model for {cfg.label} on {FIRST_MODEL_TRAIN_ROWS} rows ...")
    with tempfile.TemporaryDirectory() as work:
        first = cfg.model_copy(update={"max_train_samples": FIRST_MODEL_TRAIN_ROWS, "first_deploy_min_f1": 0.0,
                                       "output_dir": Path(work), "wandb_mode": "disabled",
                                       "retrain_space_id": None})
        result = train_model.run(first)
    if result.outcome != "promoted":
        raise RuntimeError(f"the seed run for the first {cfg.label} model ended {result.outcome}: {result.error}")
    macro_f1 = result.comparison["candidate"]["macro_f1"]
    say(f"first deployed model {cfg.model_repo}@{result.version} (macro-F1 {macro_f1:.3f})")
    return result.version


def seed_spaces(hub, hub_url: str, cfg: JobConfig, extra_variables: dict[str, str]) -> None:
    import localhub

    apps = {
        cfg.inference_space: ([sys.executable, "-m", "inference_space"], True,
                              {"LABEL": cfg.label, "MODEL_ID": cfg.model_repo}),
        retrain_space_id(cfg): ([sys.executable, "train_model.py"], False,
                                {"LABEL": cfg.label, "OUTPUT_DIR": str(PROJECT_ROOT / "outputs"),
                                 **extra_variables}),
    }
    for space_id, (command, serves_http, variables) in apps.items():
        hub.ensure_repo(space_id, "space")
        localhub.bind_space(hub_url, space_id, command, cwd=PROJECT_ROOT, serves_http=serves_http)
        space = hub.space(space_id)
        for key, value in variables.items():
            space.set_variable(key, value)


def retrain_space_id(cfg: JobConfig) -> str:
    return f"{cfg.namespace}/grievance-{cfg.label}-retrain"


def start_inference_space(hub, cfg: JobConfig, timeout: float = 300) -> None:
    from deployed_api import DeployedModelClient

    space = hub.space(cfg.inference_space)
    if space.state().stage != "RUNNING":
        space.restart()
    state = space.wait_until("RUNNING", timeout=timeout)
    client = DeployedModelClient(state.url)
    try:
        health = client.wait_until_ready(timeout)
    finally:
        client.close()
    say(f"inference Space {cfg.inference_space} serves {health['revision']} at {state.url}")


def seed(hub_url: str, labels: list[str], base_model: str = "e5", namespace: str = DEFAULT_NAMESPACE) -> None:
    from hub import HubClient

    hub = HubClient(hub_url)
    model_repo = seed_base_model(hub, base_model, namespace)
    for label in labels:
        training = TRAINING_VARIABLES[base_model]
        cfg = JobConfig(label=label, hf_endpoint=hub_url, namespace=namespace, model_checkpoint=model_repo,
                        num_train_epochs=1, eval_steps=10, **{k.lower(): v for k, v in training.items()})
        seed_dataset(hub, cfg.dataset_repo)
        # The job restarts the inference Space when it promotes: bind the Spaces first.
        seed_spaces(hub, hub_url, cfg, {"MODEL_CHECKPOINT": model_repo, **training})
        seed_first_model(hub, cfg)
        start_inference_space(hub, cfg)


def follow_retrain_space(hub, hub_url: str, space_id: str, timeout: float) -> str:
    """Restart the retrain Space and stream its log until it leaves RUNNING."""
    space = hub.space(space_id)
    space.restart()
    say(f"restarted {space_id}; following its log")
    printed, deadline = 0, time.monotonic() + timeout
    while True:
        lines = httpx.get(f"{hub_url}/api/spaces/{space_id}/local-app/logs", params={"lines": 100000},
                          timeout=10).json()["lines"]
        for line in lines[printed:]:
            if line.strip():
                print(f"  | {line}", flush=True)
        printed = len(lines)
        stage = space.state().stage
        if stage not in ("BUILDING", "RUNNING", "RUNNING_BUILDING"):
            return stage
        if time.monotonic() > deadline:
            return f"still {stage} after {timeout:.0f}s"
        time.sleep(1)


def latest_summary(label: str) -> Path | None:
    runs = sorted((PROJECT_ROOT / "outputs").glob(f"{label}-*/summary.txt"))
    return runs[-1] if runs else None


def demo(hub_url: str, label: str, base_model: str, timeout: float = 1800) -> int:
    from hub import HubClient

    started = time.monotonic()
    seed(hub_url, [label], base_model)
    cfg = JobConfig(label=label, hf_endpoint=hub_url)
    stage = follow_retrain_space(HubClient(hub_url), hub_url, retrain_space_id(cfg), timeout)
    summary = latest_summary(label)
    say(f"retrain Space ended {stage} after {time.monotonic() - started:.0f}s in all")
    if summary is None:
        say("no run summary was written: see the log above")
        return 1
    run_dir = summary.parent
    say(f"summary:       {summary}")
    say(f"metadata.json: {run_dir / 'metadata.json'}")
    say(f"W&B offline:   {json.loads((run_dir / 'summary.json').read_text())['wandb_dir']} (wandb sync DIR)")
    data_dir = os.environ.get("LOCALHUB_DATA_DIR", ".localhub")
    say(f"local hub:     {hub_url} keeps running (stop it: python -m localhub stop --data-dir {data_dir})")
    return 0 if stage == "PAUSED" else 1
