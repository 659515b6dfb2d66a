"""Time to score N samples against a local inference Space: this project's batched client vs
the upstream loop (one blocking /predict request per text). Both run in one go, against the same
Space, on the same texts; the ratio is what matters.

    python bench/compare_deployed.py [--samples 300] [--base-model tiny|e5]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

import httpx  # noqa: E402
import pandas as pd  # noqa: E402

import localhub  # noqa: E402
from configs import JobConfig  # noqa: E402
from deployed_api import DeployedModelClient  # noqa: E402
from hub import HubClient  # noqa: E402
from localhub.seed import SAMPLE_DATA, seed  # noqa: E402


def upstream_loop(url: str, texts: list[str]) -> list[str | None]:
    """What the upstream job did: one request at a time, failures silently dropped."""
    labels = []
    with httpx.Client(timeout=30) as client:
        for text in texts:
            try:
                labels.append(client.post(f"{url}/predict", json={"text": text}).json()["label"])
            except (httpx.HTTPError, KeyError, ValueError):
                labels.append(None)
    return labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--base-model", choices=["tiny", "e5"], default="tiny")
    args = parser.parse_args()
    texts = pd.concat([pd.read_csv(SAMPLE_DATA / "test.csv"), pd.read_csv(SAMPLE_DATA / "pool.csv")]).text
    texts = texts.head(args.samples).tolist()
    with tempfile.TemporaryDirectory() as data_dir, localhub.start_background(data_dir) as hub_server:
        seed(hub_server.url, ["urgency"], args.base_model)
        cfg = JobConfig(label="urgency", hf_endpoint=hub_server.url)
        url = HubClient(hub_server.url).space(cfg.inference_space).state().url
        client = DeployedModelClient.from_config(cfg, url)
        client.predict_labels(texts[:8])  # warm both paths up
        upstream_loop(url, texts[:8])
        started = time.perf_counter()
        batched = client.predict_labels(texts)
        batched_s = time.perf_counter() - started
        started = time.perf_counter()
        looped = upstream_loop(url, texts)
        loop_s = time.perf_counter() - started
        client.close()
    agree = sum(a == b for a, b in zip(batched.labels, looped)) / len(texts)
    print(f"samples: {len(texts)}  base model: {args.base_model}")
    print(f"batched client (/predict/batch, {cfg.deployed_batch_size}/request): {batched_s:.2f}s  "
          f"failures {len(batched.failures)}")
    print(f"upstream loop (one /predict per text):        {loop_s:.2f}s")
    print(f"speed-up: {loop_s / batched_s:.1f}x (target >= 10x); same labels on {agree:.0%} of texts")


if __name__ == "__main__":
    main()
