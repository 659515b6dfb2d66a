"""The inference image, full (requirements.txt, torch backend) vs slim (inference_space/requirements.txt,
ONNX backend), measured side by side in one run.

    python bench/image_size.py                 # tiny model trained here, released with model.onnx
    python bench/image_size.py --rounds 5 --sizes proxy
    git worktree add /tmp/base main && python bench/image_size.py --baseline-code /tmp/base   # before/after

Size: with a Docker daemon (`docker info` answers) and python:3.12-slim here, both images are built from inference_space/Dockerfile
(--build-arg REQUIREMENTS=...) and their sizes compared. Without one it measures the honest proxy and
says so: the installed size of each requirements set's dependency closure, summed from the files
the installed distributions list (RECORD) in this environment. Both share the python:3.12-slim base.

Cold start: `python -m inference_space` from process start to /health ok (snapshot download from a
local hub included), torch backend vs ONNX backend on the same release, alternating, median of
--rounds; then the answers of both to /predict/batch on the test split are compared.
Goals (issue 13): slim <= 1/5 of the size, >= 3x faster cold start, the same predictions.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import httpx
import pandas as pd
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.inference import DATA_DIR, train_tiny_classifier  # noqa: E402
from configs import LABEL_SETS  # noqa: E402
from localhub.spaces import free_port  # noqa: E402

REQUIREMENTS = {"full": ROOT / "requirements.txt", "slim": ROOT / "inference_space" / "requirements.txt"}
BACKENDS = {"full": "torch", "slim": "onnx"}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--label", choices=sorted(LABEL_SETS), default="urgency")
    parser.add_argument("--rounds", type=int, default=3, help="cold starts of each backend (alternating)")
    parser.add_argument("--epochs", type=int, default=4, help="training epochs of the tiny model")
    parser.add_argument("--baseline-code", type=Path, help=(
        "another checkout of this project (e.g. `git worktree add /tmp/base main`): its slim Space's cold start "
        "is measured in the same rounds, for a before/after ratio"))
    parser.add_argument("--slim-python", type=Path, help=(
        "the python of a virtual environment holding only inference_space/requirements.txt (as the image does): "
        "its slim Space's cold start is measured too, as 'slim venv'; this environment has every package, "
        "and some (rich, trio) are imported when present"))
    parser.add_argument("--sizes", choices=("auto", "docker", "proxy"), default="auto",
                        help="docker: build both images (pip in the build needs a registry); proxy: installed sizes "
                             "here; auto: docker when a daemon and python:3.12-slim are here, else proxy")
    return parser.parse_args(argv)


def requirement_lines(path: Path) -> list[Requirement]:
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return [Requirement(line) for line in lines if line]


def installed_closure(path: Path) -> tuple[dict[str, int], list[str]]:
    """({distribution: installed bytes}, [requirements not installed here]) of a requirements file."""
    sizes, missing, todo, seen = {}, [], [(r, frozenset(r.extras)) for r in requirement_lines(path)], set()
    while todo:
        requirement, extras = todo.pop()
        name = canonicalize_name(requirement.name)
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        try:
            dist = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            missing.append(str(requirement))
            continue
        sizes[name] = sum(f.size or 0 for f in dist.files or [])
        for line in dist.requires or []:
            child = Requirement(line)
            if child.marker is None or any(child.marker.evaluate({"extra": e}) for e in (extras or {""})):
                todo.append((child, frozenset(child.extras)))
    return sizes, missing


BASE_IMAGE = "python:3.12-slim"


def docker_available() -> bool:
    """A Docker daemon with the base image already here (building never waits on a registry)."""
    if not shutil.which("docker"):
        return False
    if subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode != 0:
        return False
    if subprocess.run(["docker", "image", "inspect", BASE_IMAGE], capture_output=True, timeout=30).returncode:
        print(f"Docker daemon found, but no {BASE_IMAGE} image here (`docker pull {BASE_IMAGE}` first)")
        return False
    return True


def docker_image_sizes() -> dict[str, int]:
    sizes = {}
    for name, requirements in REQUIREMENTS.items():
        tag = f"retrainspace-inference:{name}"
        print(f"building {tag} ...", flush=True)
        subprocess.run(["docker", "build", "-q", "-t", tag, "-f", "inference_space/Dockerfile",
                        "--build-arg", f"REQUIREMENTS={requirements.relative_to(ROOT)}",
                        "--build-arg", f"INFERENCE_BACKEND={BACKENDS[name]}", "."], cwd=ROOT, check=True)
        sizes[name] = int(subprocess.run(["docker", "image", "inspect", "-f", "{{.Size}}", tag], capture_output=True,
                                         text=True, check=True).stdout)
    return sizes


def measure_sizes(how: str = "auto") -> dict[str, int]:
    if how == "docker" or (how == "auto" and docker_available()):
        print("Docker daemon found: sizes are of the built images")
        return docker_image_sizes()
    print("No images built: sizes are a PROXY, the installed size of each requirements set's dependency "
          "closure in this environment (pip's RECORD of each distribution); the python:3.12-slim base is not counted")
    torch_version = metadata.version("torch")
    if "+cpu" in torch_version:
        print(f"  torch here is {torch_version} (the CPU build): the image's torch from the default index also "
              "pulls the nvidia-* CUDA wheels, not counted here, so the full image's real share is larger")
    sizes = {}
    for name, path in REQUIREMENTS.items():
        closure, missing = installed_closure(path)
        sizes[name] = sum(closure.values())
        top = sorted(closure.items(), key=lambda item: -item[1])[:5]
        print(f"  {name:5s} {path.relative_to(ROOT)}: {len(closure)} distributions, {sizes[name] / 1e6:,.0f} MB; "
              f"largest: " + ", ".join(f"{n} {s / 1e6:,.0f} MB" for n, s in top)
              + (f"; not installed here: {missing}" if missing else ""))
    return sizes


def release_with_onnx(tmp: Path, label: str, epochs: int, texts: list[str], gold: list[str]) -> Path:
    """The tiny classifier as the promotion releases it: weights, tokenizer, model.onnx, metadata."""
    from onnx_export import add_onnx_to_release, save_samples

    folder = train_tiny_classifier(tmp / "model", label, epochs, hidden=32, layers=2, lr=3e-3, max_length=128)
    (folder / "metadata.json").write_text(json.dumps({"version": "v20260101_000000"}))
    labels = LABEL_SETS[label]
    save_samples(tmp, texts, [labels.index(g) for g in gold])
    record = add_onnx_to_release(folder, tmp, labels, 128)
    print(f"release ships ONNX variant {record['variant']}: " + json.dumps(record.get("variants")))
    return folder


def cold_start(backend: str, env: dict[str, str], cache: Path, texts: list[str],
               code: Path = ROOT, python: str = sys.executable) -> tuple[float, float, list[dict]]:
    """Seconds from process start to /health ok, the model load's share that /health reports,
    and the answers to /predict/batch."""
    port = free_port()
    env = {**env, "PORT": str(port), "INFERENCE_BACKEND": backend, "CACHE_DIR": str(cache), "PYTHONPATH": str(code)}
    url = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    process = subprocess.Popen([python, "-m", "inference_space"], cwd=code, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the {backend} Space exited with {process.returncode}")
            try:
                health = httpx.get(f"{url}/health", timeout=5).json()
                if health["status"] == "ok":
                    break
                if health["status"] == "error":
                    raise RuntimeError(f"the {backend} Space failed to load: {health['error']}")
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        seconds = time.perf_counter() - started
        predictions = []
        for i in range(0, len(texts), 64):
            predictions += httpx.post(f"{url}/predict/batch", json={"texts": texts[i:i + 64]},
                                      timeout=120).json()["predictions"]
        return seconds, health["load_seconds"], predictions
    finally:
        process.terminate()
        process.wait(timeout=30)


def measure_cold_starts(args, tmp: Path) -> tuple[dict[str, float], dict[str, list[dict]]]:
    import localhub
    from hub import HubClient

    test = pd.read_csv(DATA_DIR / "test.csv")
    texts, gold = test.text.tolist(), test[args.label].tolist()
    folder = release_with_onnx(tmp, args.label, args.epochs, texts, gold)
    hub_server = localhub.start_background(tmp / "hub", port=0)
    try:
        hub = HubClient(hub_server.url, cache_dir=tmp / "hf-cache")
        repo = "bench/inference-model"
        hub.ensure_repo(repo)
        hub.create_tag(repo, "v20260101_000000", hub.upload_folder(repo, folder, "release"))
        env = {k: v for k, v in os.environ.items() if k not in ("MODEL_REVISION", "HF_TOKEN")}
        env.update(LABEL=args.label, MODEL_ID=repo, HF_ENDPOINT=hub_server.url,
                   FEEDBACK_DB_URL=f"sqlite:///{tmp / 'feedback.db'}", HF_HOME=str(tmp / "hf"))
        variants = {name: (backend, ROOT, sys.executable) for name, backend in BACKENDS.items()}
        if args.baseline_code:
            variants["baseline slim"] = ("onnx", args.baseline_code.resolve(), sys.executable)
        if args.slim_python:
            variants["slim venv"] = ("onnx", ROOT, str(args.slim_python))
        seconds, answers = {name: [] for name in variants}, {}
        for round_ in range(args.rounds):
            for name, (backend, code, python) in variants.items():
                took, loading, answers[name] = cold_start(backend, env, tmp / f"cache-{name}-{round_}", texts, code,
                                                          python)
                seconds[name].append(took)
                print(f"  round {round_ + 1}: {name} ({backend}) /health ok after {took:.2f}s "
                      f"(model load {loading:.2f}s of it)", flush=True)
    finally:
        hub_server.stop()
    return {name: statistics.median(values) for name, values in seconds.items()}, answers


def main(argv=None) -> dict:
    args = parse_args(argv)
    sizes = measure_sizes(args.sizes)
    with tempfile.TemporaryDirectory() as tmp:
        starts, answers = measure_cold_starts(args, Path(tmp))
    agreement = {name: compare_answers(answers["full"], answers[name]) for name in answers if name != "full"}
    print(f"\nsize:       full {sizes['full'] / 1e6:,.0f} MB, slim {sizes['slim'] / 1e6:,.0f} MB, "
          f"slim/full {sizes['slim'] / sizes['full']:.3f} (goal <= 0.2)")
    print(f"cold start: full (torch) {starts['full']:.2f}s, slim (onnx) {starts['slim']:.2f}s, "
          f"full/slim {starts['full'] / starts['slim']:.2f}x (goal >= 3x), median of {args.rounds}")
    if "baseline slim" in starts:
        print(f"            baseline slim ({args.baseline_code}) {starts['baseline slim']:.2f}s, "
              f"baseline/slim {starts['baseline slim'] / starts['slim']:.2f}x, full/baseline "
              f"{starts['full'] / starts['baseline slim']:.2f}x")
    if "slim venv" in starts:
        print(f"            slim venv ({args.slim_python}) {starts['slim venv']:.2f}s, "
              f"full/slim venv {starts['full'] / starts['slim venv']:.2f}x")
    for name, (same, gap, near_ties) in agreement.items():
        print(f"predictions of {name} vs full on {len(answers['full'])} test texts: same label on {same}, "
              f"largest score difference {gap:.4f}; the texts answered differently had a top-2 margin "
              f"under {near_ties:.4f} in full")
    return {"sizes": sizes, "cold_start_s": starts, "agreement": agreement}


def compare_answers(full: list[dict], other: list[dict]) -> tuple[int, float, float]:
    """(texts with the same label, largest score difference, largest top-2 margin in `full`
    among the texts labelled differently: a flip within the score difference is a near tie)."""
    same = sum(a["label"] == b["label"] for a, b in zip(full, other))
    gap = max(abs(a["scores"][k] - b["scores"][k]) for a, b in zip(full, other) for k in a["scores"])
    margins = [top[0] - top[1] for a, b in zip(full, other) if a["label"] != b["label"]
               for top in [sorted(a["scores"].values(), reverse=True)]]
    return same, gap, max(margins, default=0.0)


if __name__ == "__main__":
    main()
