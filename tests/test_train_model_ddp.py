import os
import subprocess
import sys

import pytest

from tests.fixtures.scenarios import PROJECT_ROOT
from tests.fixtures.servers import free_port


@pytest.mark.slow
def test_job_under_torchrun_trains_on_two_ranks_and_only_rank_0_deploys(loop):
    loop.start_inference_space(serving=False)
    env = {**os.environ, **loop.env, "MAX_TRAIN_SAMPLES": "64", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--master_port", str(free_port()), "train_model.py"]
    done = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("step: deploy") == 1  # rank 1 trained, then stopped
    [run_dir] = list(loop.out_dir.iterdir())  # both ranks wrote into one folder
    assert run_dir.name.startswith("urgency-ddp-")
    summary = loop.summary()
    assert summary["outcome"] == "promoted" and set(loop.tags()) == {summary["version"]}
    assert loop.stage(loop.retrain_space) == "PAUSED"
