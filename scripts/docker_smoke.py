"""Docker smoke test of both Space images, where a Docker daemon and the base image exist.

    python scripts/docker_smoke.py [--keep-images]

1. builds the retrain image (Dockerfile) and the inference image (inference_space/Dockerfile);
2. starts a local hub on the host, seeded with the tiny test model (`python -m localhub seed --base-model tiny`);
3. runs the retrain image against it, as uid 1000 like a Space: it must end with the retrain
   Space PAUSED and a new version tag;
4. starts the inference image and checks /health and /predict.

Without a Docker daemon, or without python:3.12-slim locally or from a registry, it prints one
line saying so and exits 0: nothing was tested.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from localhub.spaces import free_port  # noqa: E402

BASE_IMAGE = "python:3.12-slim"
IMAGES = {"retrainspace-retrain:smoke": "Dockerfile", "retrainspace-api:smoke": "inference_space/Dockerfile"}
LABEL, NAMESPACE = "urgency", "retrainspace"


def docker(*args: str, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], check=check, text=True, capture_output=capture)


def skip_reason() -> str | None:
    try:
        info = docker("info", check=False)
    except FileNotFoundError:
        return "no docker command"
    if info.returncode != 0:
        return f"no Docker daemon ({(info.stderr or info.stdout).strip().splitlines()[-1]})"
    if docker("image", "inspect", BASE_IMAGE, check=False).returncode != 0:
        pulled = docker("pull", BASE_IMAGE, check=False)
        if pulled.returncode != 0:
            return f"the base image {BASE_IMAGE} is not here and cannot be pulled"
    return None


def build_images() -> None:
    for tag, dockerfile in IMAGES.items():
        started = time.monotonic()
        docker("build", "-f", dockerfile, "-t", tag, ".", capture=False)
        size = int(docker("image", "inspect", tag, "--format", "{{.Size}}").stdout.strip())
        print(f"[smoke] built {tag} from {dockerfile}: {size / 1e9:.2f} GB in {time.monotonic() - started:.0f}s")


def check_bytecode_cached() -> None:
    """uid 1000 cannot write bytecode in either image: the standard library's and the code's must be there."""
    probe = ("import os, asyncio, logging, configs; "
             "missing = [m.__name__ for m in (asyncio, logging, configs) if not os.path.exists(m.__cached__)]; "
             "print(' '.join(missing))")
    for tag in IMAGES:
        missing = docker("run", "--rm", tag, "python", "-c", probe).stdout.split()
        if missing:
            raise SystemExit(f"[smoke] FAILED: {tag} compiles {', '.join(missing)} again at every start "
                             "(no bytecode in the image)")
        print(f"[smoke] {tag}: standard library and code bytecode compiled in the image")


def start_seeded_hub(data_dir: Path) -> tuple[str, subprocess.Popen]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "LOCALHUB_URL": url, "LOCALHUB_DATA_DIR": str(data_dir)}
    hub = subprocess.Popen([sys.executable, "-m", "localhub", "serve", "--data-dir", str(data_dir),
                            "--port", str(port)], cwd=ROOT, env=env)
    subprocess.run([sys.executable, "-m", "localhub", "seed", "--base-model", "tiny", "--label", LABEL,
                    "--url", url], cwd=ROOT, env=env, check=True)
    return url, hub


def hub_json(url: str, path: str):
    response = httpx.get(f"{url}{path}", timeout=10)
    response.raise_for_status()
    return response.json()


def run_retrain_image(url: str) -> None:
    space = f"{NAMESPACE}/grievance-{LABEL}-retrain"
    refs = f"/api/models/{NAMESPACE}/grievance-{LABEL}-classifier/refs"
    tags_before = {t["name"] for t in hub_json(url, refs)["tags"]}
    # host networking: the container reaches the hub on the host's loopback, as a Space reaches the Hub
    docker("run", "--rm", "--network", "host", "-e", f"LABEL={LABEL}", "-e", f"HF_ENDPOINT={url}",
           "-e", f"SPACE_ID={space}", "-e", f"MODEL_CHECKPOINT={NAMESPACE}/tiny-bert", "-e", f"PORT={free_port()}",
           "-e", "WANDB_MODE=offline", "-e", "NUM_TRAIN_EPOCHS=6", "-e", "LEARNING_RATE=1e-2",
           "retrainspace-retrain:smoke", capture=False, check=False)
    stage = hub_json(url, f"/api/spaces/{space}/runtime")["stage"]
    tags_after = {t["name"] for t in hub_json(url, refs)["tags"]}
    new_tags = sorted(tags_after - tags_before)
    print(f"[smoke] retrain image: Space {space} ended {stage}; new tags {new_tags}")
    if stage != "PAUSED":
        raise SystemExit(f"[smoke] FAILED: the retrain Space ended {stage}, not PAUSED")


def run_inference_image(url: str) -> None:
    port = free_port()
    container = docker("run", "-d", "--rm", "--network", "host", "-e", f"LABEL={LABEL}", "-e", f"HF_ENDPOINT={url}",
                       "-e", f"MODEL_ID={NAMESPACE}/grievance-{LABEL}-classifier", "-e", f"PORT={port}",
                       "retrainspace-api:smoke").stdout.strip()
    started = time.monotonic()
    try:
        while time.monotonic() - started < 300:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json()
                if health.get("status") == "ok":
                    break
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(1)
        else:
            raise SystemExit("[smoke] FAILED: the inference image did not answer /health ok within 300 s")
        answer = httpx.post(f"http://127.0.0.1:{port}/predict", json={"text": "पानी आएको छैन"}, timeout=30).json()
        print(f"[smoke] inference image: /health ok after {time.monotonic() - started:.1f}s "
              f"(revision {health.get('revision')}); /predict -> {json.dumps(answer, ensure_ascii=False)}")
    finally:
        docker("stop", container, check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep-images", action="store_true", help="keep the smoke images afterwards")
    args = parser.parse_args()
    reason = skip_reason()
    if reason:
        print(f"[smoke] skipped: {reason}; nothing was tested")
        return 0
    os.chdir(ROOT)
    build_images()
    check_bytecode_cached()
    with tempfile.TemporaryDirectory() as data_dir:
        url, hub = start_seeded_hub(Path(data_dir))
        try:
            run_retrain_image(url)
            run_inference_image(url)
        finally:
            hub.terminate()
            hub.wait(timeout=30)
    if not args.keep_images:
        docker("rmi", *IMAGES, check=False)
    print("[smoke] both images passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
