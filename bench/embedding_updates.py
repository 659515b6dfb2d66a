"""Seconds per optimizer step of multilingual-e5-small on CPU, by how the word embeddings train.

    python bench/embedding_updates.py [--steps 6] [--modes frozen sparse full]

frozen: the 96M-weight vocabulary matrix is fixed (AdamW over the other 22M weights);
sparse: only the rows of the batch's tokens get a gradient and an AdamW update (SparseRowAdamW);
full: torch's AdamW over all 118M weights. Same batches (16 fixture rows, max_length 128), same
process, modes interleaved step by step so a shared machine's load hits them alike. Reports
wall and CPU seconds per step (forward, focal loss, backward, clipping, optimizer) and the ratio
to frozen. Quality per mode: bench/quality.py --word-embeddings frozen sparse full.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402
import torch  # noqa: E402

import model_pipeline as mp  # noqa: E402
from configs import JobConfig  # noqa: E402
from localhub.seed import SAMPLE_DATA, build_base_model  # noqa: E402


def setup(mode: str, base: Path, cfg: JobConfig):
    model, tokenizer = mp.load_base_model(base, cfg)
    mp.set_word_embedding_mode(model, mode)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = (mp.SparseRowAdamW if mode == "sparse" else torch.optim.AdamW)(params, lr=1e-4, weight_decay=0.01)
    return model.train(), tokenizer, optimizer


def one_step(model, optimizer, batch, labels) -> None:
    loss = mp.focal_loss(model(**batch).logits, labels, gamma=2.0)
    loss.backward()
    mp.clip_grad_norm_with_sparse(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--modes", nargs="+", choices=["frozen", "sparse", "full"], default=["frozen", "sparse", "full"])
    args = parser.parse_args()
    cfg = JobConfig(label="urgency", hf_endpoint="http://127.0.0.1:1")
    base = build_base_model("e5")
    runs = {mode: setup(mode, base, cfg) for mode in args.modes}
    tokenizer = next(iter(runs.values()))[1]
    df = pd.read_csv(SAMPLE_DATA / "train.csv").sample(frac=1, random_state=0)
    batches = [(tokenizer(df.text[i:i + 16].tolist(), truncation=True, max_length=128, padding=True, return_tensors="pt"),
                torch.tensor(df.urgency[i:i + 16].map(cfg.label2id).to_numpy())) for i in range(0, 16 * (args.steps + 1), 16)]
    wall = {mode: 0.0 for mode in runs}
    cpu = dict(wall)
    for step, (batch, labels) in enumerate(batches):
        for mode, (model, _, optimizer) in runs.items():
            w, c = time.perf_counter(), time.process_time()
            one_step(model, optimizer, batch, labels)
            if step:  # the first step allocates the optimizer state
                wall[mode] += time.perf_counter() - w
                cpu[mode] += time.process_time() - c
    print(f"{'mode':<7} {'wall s/step':>11} {'cpu s/step':>10} {'vs frozen':>9}  ({args.steps} steps, torch threads {torch.get_num_threads()})")
    for mode in runs:
        ratio = f"{cpu[mode] / cpu['frozen']:.2f}x" if "frozen" in cpu else "-"
        print(f"{mode:<7} {wall[mode] / args.steps:>11.2f} {cpu[mode] / args.steps:>10.2f} {ratio:>9}")


if __name__ == "__main__":
    main()
