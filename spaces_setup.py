"""Set up one LABEL on the Hub in one command: repos, the retrain Space and the inference Space.

    python -m spaces_setup --label urgency --namespace NS [--dry-run]

Idempotent: what exists is kept, the Spaces' code, variables, secrets, hardware and sleep time
are brought to what the plan says. Each Space is a Docker Space with its own Dockerfile at the
root of its repo and this project's code beside it (what the Docker build context would get:
`.dockerignore` applies). With HF_TOKEN set it works on the real Hub; without, on the local hub
(`python -m localhub serve`), which runs a Docker Space by emulating its build (see localhub/docker_space.py).
"""
from __future__ import annotations

import argparse
import fnmatch
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from configs import ConfigError, JobConfig, load_config
from hub import HubClient, HubError

PROJECT_ROOT = Path(__file__).resolve().parent
RETRAIN_DOCKERFILE = PROJECT_ROOT / "Dockerfile"
INFERENCE_DOCKERFILE = PROJECT_ROOT / "inference_space" / "Dockerfile"
APP_PORT = 7860
SECRET_VARIABLES = ("HF_TOKEN", "WANDB_API_KEY")
FREE_HARDWARE = "cpu-basic"  # its sleep time is fixed by the Hub (48 h); only paid hardware takes a setting


@dataclass
class SpacePlan:
    space_id: str
    role: str                      # "retrain" or "inference"
    dockerfile: Path
    variables: dict[str, str]
    secrets: dict[str, str] = field(repr=False)
    hardware: str = FREE_HARDWARE
    sleep_time_s: int | None = None


@dataclass
class SetupPlan:
    endpoint: str
    repos: list[tuple[str, str]]   # (repo id, repo type)
    spaces: list[SpacePlan]


def retrain_space_id(cfg: JobConfig) -> str:
    return f"{cfg.namespace}/grievance-{cfg.label}-retrain"


def build_plan(cfg: JobConfig, args: argparse.Namespace) -> SetupPlan:
    """What should exist for this LABEL; nothing is read from or written to the Hub here."""
    repo_ids = {"DATASET_REPO_ID": cfg.dataset_repo, "HUB_MODEL_ID": cfg.model_repo,
                "SPACE_REPO_ID": cfg.inference_space}
    retrain_secrets = {name: value for name, value in zip(SECRET_VARIABLES, (cfg.token, wandb_key(cfg))) if value}
    retrain = SpacePlan(retrain_space_id(cfg), "retrain", RETRAIN_DOCKERFILE,
                        {"LABEL": cfg.label, **repo_ids, **dict(args.retrain_variable)}, retrain_secrets,
                        args.retrain_hardware)
    # The inference Space reads a public model repo: it gets no write token.
    inference = SpacePlan(cfg.inference_space, "inference", INFERENCE_DOCKERFILE,
                          {"LABEL": cfg.label, "MODEL_ID": cfg.model_repo}, {}, args.inference_hardware,
                          args.inference_sleep_time)
    return SetupPlan(cfg.endpoint, [(cfg.dataset_repo, "dataset"), (cfg.model_repo, "model")], [retrain, inference])


def wandb_key(cfg: JobConfig) -> str | None:
    return cfg.wandb_api_key.get_secret_value() if cfg.wandb_api_key else None


def describe(plan: SetupPlan) -> str:
    lines = [f"Hub: {plan.endpoint}"]
    lines += [f"  {repo_type:7} {repo_id} (created if missing)" for repo_id, repo_type in plan.repos]
    for space in plan.spaces:
        sleep = "" if space.sleep_time_s is None else f", sleeps after {space.sleep_time_s} s idle"
        lines.append(f"  space   {space.space_id} ({space.role}; Docker, {space.dockerfile.relative_to(PROJECT_ROOT)}"
                     f" as its Dockerfile; hardware {space.hardware}{sleep})")
        lines += [f"          variable {key}={value}" for key, value in space.variables.items()]
        lines += [f"          secret   {key}=***" for key in space.secrets]
    return "\n".join(lines)


# --- the Space repos' content -----------------------------------------------------------
def dockerignore_patterns(root: Path = PROJECT_ROOT) -> list[str]:
    path = root / ".dockerignore"
    lines = path.read_text().splitlines() if path.exists() else []
    return [line.strip().rstrip("/") for line in lines if line.strip() and not line.startswith("#")]


def is_ignored(relative: Path, patterns: list[str]) -> bool:
    """Docker's rule: a pattern names a path from the context root (or, after `**/`, at any
    depth); a matching folder excludes everything below it."""
    parts = relative.parts
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for pattern in patterns:
        if pattern.startswith("**/"):
            if any(fnmatch.fnmatch(part, pattern[3:]) for part in parts):
                return True
        elif any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes):
            return True
    return False


def space_readme(space: SpacePlan) -> str:
    title = space.space_id.split("/")[1]
    return (f"---\ntitle: {title}\nsdk: docker\napp_port: {APP_PORT}\npinned: false\n---\n\n"
            f"# {title}\n\nThe {space.role} Space of retrainspace, set up by `python -m spaces_setup`.\n")


def stage_space_repo(space: SpacePlan, out: Path) -> Path:
    """This project's code as the Docker build context sees it, with the Space's own Dockerfile
    at the root and a README whose front matter makes it a Docker Space."""
    patterns = dockerignore_patterns()
    for source in sorted(PROJECT_ROOT.rglob("*")):
        relative = source.relative_to(PROJECT_ROOT)
        if source.is_file() and not is_ignored(relative, patterns):
            target = out / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    shutil.copy2(space.dockerfile, out / "Dockerfile")
    (out / "README.md").write_text(space_readme(space))
    return out


# --- applying the plan ------------------------------------------------------------------
def apply(plan: SetupPlan, hub: HubClient, say=print) -> None:
    for repo_id, repo_type in plan.repos:
        hub.ensure_repo(repo_id, repo_type)
        say(f"{repo_type} repo {repo_id}: ready")
    for space in plan.spaces:
        set_up_space(hub, space, say)


def set_up_space(hub: HubClient, space: SpacePlan, say) -> None:
    hub.ensure_repo(space.space_id, "space")
    controller = hub.space(space.space_id)
    for key, value in space.variables.items():
        controller.set_variable(key, value)
    for key, value in space.secrets.items():
        controller.set_secret(key, value)
    controller.request_hardware(space.hardware)
    if space.sleep_time_s is not None and space.hardware != FREE_HARDWARE:
        controller.set_sleep_time(space.sleep_time_s)
    elif space.sleep_time_s is not None:
        say(f"  note: {space.space_id} runs on {FREE_HARDWARE}, whose sleep time the Hub fixes; "
            "--inference-sleep-time applies to paid hardware only")
    with tempfile.TemporaryDirectory() as folder:
        repo_folder = stage_space_repo(space, Path(folder))
        commit = hub.upload_folder(space.space_id, repo_folder, f"retrainspace: {space.role} Space code", "space")
    # Uploading builds the Space on the Hub; the retrain Space pauses itself after its first run.
    say(f"space {space.space_id} ({space.role}): code at {commit[:12]}, "
        f"{len(space.variables)} variables, {len(space.secrets)} secrets, {space.hardware}")


def variable(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not re.fullmatch(r"[A-Z_][A-Z0-9_]*", key):
        raise argparse.ArgumentTypeError(f"{text!r}: use KEY=VALUE with KEY in capitals, e.g. NUM_TRAIN_EPOCHS=5")
    if key in SECRET_VARIABLES:
        raise argparse.ArgumentTypeError(f"{key} is a secret: set it in the environment, never on the command line")
    return key, value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m spaces_setup",
        description="Create (idempotently) the dataset and model repos, the retrain Space and the inference Space "
        "of one LABEL, each Space a Docker Space with this project's code, its Dockerfile, variables and secrets. "
        "HF_TOKEN set: the real Hub (the token becomes the retrain Space's HF_TOKEN secret; WANDB_API_KEY too when "
        "set). Unset: the local hub at LOCALHUB_URL.")
    parser.add_argument("--label", required=True, choices=["department", "urgency"])
    parser.add_argument("--namespace", help="owner of the repos and Spaces (default: NAMESPACE or retrainspace)")
    parser.add_argument("--retrain-hardware", default=FREE_HARDWARE,
                        help="hardware of the retrain Space, e.g. t4-small for a GPU (default: cpu-basic)")
    parser.add_argument("--inference-hardware", default=FREE_HARDWARE, help="hardware of the inference Space")
    parser.add_argument("--inference-sleep-time", type=int, default=3600, metavar="SECONDS",
                        help="idle seconds before the inference Space sleeps (paid hardware only; default 3600)")
    parser.add_argument("--retrain-variable", action="append", default=[], type=variable, metavar="KEY=VALUE",
                        help="another setting of the retrain job, e.g. MODEL_CHECKPOINT=org/model (repeatable; "
                        "secrets come from the environment only)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and change nothing")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = load_config({"label": args.label, "namespace": args.namespace})
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    plan = build_plan(cfg, args)
    print(describe(plan))
    if args.dry_run:
        print("dry run: nothing changed")
        return 0
    try:
        apply(plan, HubClient.from_config(cfg))
    except HubError as error:
        print(f"setup stopped: {error}", file=sys.stderr)
        return 1
    print(f"done. Run a retrain: restart {retrain_space_id(cfg)} (HfApi.restart_space or the Restart button)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
