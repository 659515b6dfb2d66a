"""Time to score N samples against a local inference Space: this project's batched client vs
the upstream loop (one blocking /predict request per text). Both run in one go, against the same
Space, on the same texts; the ratio is what matters.

    python bench/compare_deployed.py [--samples 300] [--base-model tiny|e5] [--rtt-ms 100]
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

import asyncio  # noqa: E402
import threading  # noqa: E402

import httpx  # noqa: E402
import pandas as pd  # noqa: E402
import uvicorn  # noqa: E402
from fastapi import FastAPI, Request, Response  # noqa: E402  (module level: FastAPI resolves the annotations)

import localhub  # noqa: E402
from configs import JobConfig  # noqa: E402
from deployed_api import DeployedModelClient  # noqa: E402
from hub import HubClient  # noqa: E402
from localhub.seed import SAMPLE_DATA, seed  # noqa: E402


def latency_proxy(upstream: str, rtt_s: float):
    """A proxy that adds one network round trip to every request, like a Space across the internet."""
    app, client = FastAPI(), httpx.AsyncClient(base_url=upstream, timeout=60)

    @app.api_route("/{path:path}", methods=["GET", "POST"])
    async def forward(path: str, request: Request):
        await asyncio.sleep(rtt_s)
        answer = await client.request(request.method, "/" + path, content=await request.body(),
                                      headers={"content-type": request.headers.get("content-type", "")})
        return Response(answer.content, answer.status_code, media_type=answer.headers.get("content-type"))

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"


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
    parser.add_argument("--rtt-ms", type=float, default=0,
                        help="emulate a remote Space: add this round-trip time to every request (default 0: local)")
    args = parser.parse_args()
    texts = pd.concat([pd.read_csv(SAMPLE_DATA / "test.csv"), pd.read_csv(SAMPLE_DATA / "pool.csv")]).text
    texts = texts.head(args.samples).tolist()
    with tempfile.TemporaryDirectory() as data_dir, localhub.start_background(data_dir) as hub_server:
        seed(hub_server.url, ["urgency"], args.base_model)
        cfg = JobConfig(label="urgency", hf_endpoint=hub_server.url)
        url = HubClient(hub_server.url).space(cfg.inference_space).state().url
        if args.rtt_ms:
            url = latency_proxy(url, args.rtt_ms / 1000)
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
    print(f"samples: {len(texts)}  base model: {args.base_model}  emulated round trip: {args.rtt_ms:.0f} ms")
    print(f"batched client (/predict/batch, {cfg.deployed_batch_size}/request): {batched_s:.2f}s  "
          f"failures {len(batched.failures)}")
    print(f"upstream loop (one /predict per text):        {loop_s:.2f}s")
    print(f"speed-up: {loop_s / batched_s:.1f}x (target >= 10x); same labels on {agree:.0%} of texts")


if __name__ == "__main__":
    main()
