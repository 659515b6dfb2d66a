"""What a person reads in a Space's log: the job run with its output piped, as a Space runs it."""
import os
import re
import subprocess
import sys

from tests.fixtures.scenarios import PROJECT_ROOT


def test_piped_log_has_no_escape_codes_no_progress_bars_and_numbers_as_numbers(loop):
    loop.start_inference_space(serving=False)  # first deploy: the log covers training, upload and restart
    env = {**os.environ, **loop.env, "MAX_TRAIN_SAMPLES": "64"}
    done = subprocess.run([sys.executable, "train_model.py"], cwd=PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    log = done.stdout
    assert done.returncode == 0, log[-3000:]
    assert "PROMOTED" in log
    assert "\x1b" not in log
    assert not re.search(r"it/s\]|\d+%\|", log), "a progress bar line"
    assert not re.search(r"'\w+': '[-+\d.e]+'", log), "numbers printed as strings"
    assert re.search(r'"loss": \d', log) and re.search(r'"eval_macro_f1": \d', log)
    assert log.count("new classification head") == 1 and "MISSING" not in log
    assert "INFO model_pipeline: training urgency on 64 samples" in log  # logging is set up on rank 0
    assert "HTTP Request:" not in log  # but not one line per HTTP request
