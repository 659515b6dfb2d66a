"""Cold start of built inference images: `docker run` to /health ok, side by side in one run.

    python bench/container_cold_start.py retrainspace-retrain:smoke@torch retrainspace-api:old \\
        retrainspace-inference:new --rounds 5

Each IMAGE runs its own CMD; IMAGE@BACKEND runs `python -m inference_space` with
INFERENCE_BACKEND=BACKEND instead (the retrain image serving with torch is the old, torch
inference image). The images take turns, each round, against a local hub on the host (host
networking, as a Space reaches the Hub) holding the tiny classifier released with model.onnx.
Prints each start, the median per image and each median's ratio to the first image's.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.image_size import release_with_onnx  # noqa: E402
from bench.inference import DATA_DIR  # noqa: E402
from localhub.spaces import free_port  # noqa: E402

REPO, TAG, LABEL = "bench/inference-model", "v20260101_000000", "urgency"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+", help="IMAGE or IMAGE@BACKEND; the first is the reference")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=2, help="training epochs of the tiny model")
    return parser.parse_args(argv)


def docker_run_command(image: str, hub_url: str, port: int) -> list[str]:
    name, _, backend = image.partition("@")
    override = (["-e", f"INFERENCE_BACKEND={backend}", name, "python", "-m", "inference_space"] if backend
                else [name])
    return ["docker", "run", "-d", "--rm", "--network", "host", "-e", f"LABEL={LABEL}", "-e", f"HF_ENDPOINT={hub_url}",
            "-e", f"MODEL_ID={REPO}", "-e", f"PORT={port}", *override]


def cold_start(image: str, hub_url: str, timeout: float = 300) -> tuple[float, dict]:
    """Seconds from `docker run` to /health ok, and that /health."""
    port = free_port()
    started = time.monotonic()
    container = subprocess.run(docker_run_command(image, hub_url, port), capture_output=True, text=True,
                               check=True).stdout.strip()
    try:
        while time.monotonic() - started < timeout:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json()
                if health.get("status") == "ok":
                    return time.monotonic() - started, health
                if health.get("status") == "error":
                    raise RuntimeError(f"{image} failed to load: {health.get('error')}")
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{image}: no /health ok within {timeout:.0f}s")
    finally:
        subprocess.run(["docker", "stop", "-t", "2", container], capture_output=True)


def main(argv=None) -> dict[str, float]:
    import localhub
    from hub import HubClient

    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        test = pd.read_csv(DATA_DIR / "test.csv")
        folder = release_with_onnx(tmp, LABEL, args.epochs, test.text.tolist(), test[LABEL].tolist())
        hub_server = localhub.start_background(tmp / "hub", port=0)
        try:
            hub = HubClient(hub_server.url, cache_dir=tmp / "hf-cache")
            hub.ensure_repo(REPO)
            hub.create_tag(REPO, TAG, hub.upload_folder(REPO, folder, "release"))
            seconds = {image: [] for image in args.images}
            for round_ in range(args.rounds):
                for image in args.images:
                    took, health = cold_start(image, hub_server.url)
                    seconds[image].append(took)
                    print(f"  round {round_ + 1}: {image} /health ok after {took:.2f}s "
                          f"(model load {health.get('load_seconds')}s of it)", flush=True)
        finally:
            hub_server.stop()
    medians = {image: statistics.median(values) for image, values in seconds.items()}
    reference = args.images[0]
    print(f"\ndocker run -> /health ok, median of {args.rounds}:")
    for image, median in medians.items():
        print(f"  {image}: {median:.2f}s, {medians[reference] / median:.2f}x faster than {reference}")
    return medians


if __name__ == "__main__":
    main()
