"""Shared fixtures. Each area keeps its fixtures in tests/fixtures/<area>.py."""
import os
from pathlib import Path

# The client reads these at import time: no Xet on the local hub, never the real Hub, no network.
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ.pop("HF_TOKEN", None)
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Every module in tests/fixtures/ is a fixture plugin: each area adds its own file.
pytest_plugins = sorted(
    f"tests.fixtures.{path.stem}"
    for path in (Path(__file__).parent / "fixtures").glob("*.py")
    if path.stem != "__init__"
)
