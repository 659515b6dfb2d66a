import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from localhub.spaces import free_port

SCRIPT = Path(__file__).with_name("ddp_train.py")


@pytest.mark.slow
def test_two_process_ddp_trains_and_only_rank_0_saves(tiny_model_dir, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    env.pop("RANK", None)
    completed = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
         str(SCRIPT), str(tiny_model_dir), str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert [r["main"] for r in ranks] == [True, False]
    assert all(r["world_size"] == 2 for r in ranks)
    # 350 train rows, 16 per device on 2 devices: 11 steps, where one process alone needs 22.
    assert all(r["steps"] == 11 for r in ranks)
    # Evaluation is gathered across ranks, so both see the same metrics.
    assert ranks[0]["eval_macro_f1"] == ranks[1]["eval_macro_f1"]
    # Only rank 0 fits the linear probe; DDP copies its head to rank 1 when it wraps the model.
    assert [r["head_init"] for r in ranks] == ["probe", "random"]
    assert ranks[0]["head_at_first_step"] == ranks[1]["head_at_first_step"]
    assert (tmp_path / "best_model" / "model.safetensors").is_file()
    saved = list(tmp_path.rglob("model.safetensors"))
    assert len(saved) <= 3  # best model + at most 2 checkpoints, written once (rank 0)
