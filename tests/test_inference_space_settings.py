"""Settings of the inference Space: defaults per LABEL, which Hub, and clear errors."""
from pathlib import Path

import pytest

from configs import LOCAL_HUB_ENDPOINT, REAL_HUB_ENDPOINT, ConfigError
from inference_space.serving import redact
from inference_space.settings import load_settings


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("LABEL", "MODEL_ID", "MODEL_REVISION", "HF_ENDPOINT", "HF_TOKEN", "LOCALHUB_URL",
                 "INFERENCE_BACKEND", "MAX_BATCH", "FEEDBACK_DB_URL", "PORT", "HOST", "TEXT_CLEANING"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LABEL", "department")
    return monkeypatch


def test_label_picks_the_model_repo_and_labels(clean_env):
    settings = load_settings()
    assert settings.model_repo == "retrainspace/grievance-department-classifier"
    assert len(settings.labels) == 4 and settings.port == 7860


def test_listens_on_loopback_unless_host_is_set(clean_env):
    assert load_settings().host == "127.0.0.1"  # like the local hub: any web page can reach 0.0.0.0 too
    clean_env.setenv("HOST", "0.0.0.0")
    assert load_settings().host == "0.0.0.0"


def test_the_image_listens_on_all_interfaces():
    dockerfile = (Path(__file__).resolve().parents[1] / "inference_space" / "Dockerfile").read_text()
    assert "HOST=0.0.0.0" in dockerfile


def test_endpoint_is_the_local_hub_without_token_and_the_real_hub_with_one(clean_env):
    assert load_settings().endpoint == LOCAL_HUB_ENDPOINT
    clean_env.setenv("LOCALHUB_URL", "http://127.0.0.1:9999")
    assert load_settings().endpoint == "http://127.0.0.1:9999"
    clean_env.setenv("HF_TOKEN", "hf_x")
    assert load_settings().endpoint == REAL_HUB_ENDPOINT
    clean_env.setenv("HF_ENDPOINT", "http://hub.internal/")
    assert load_settings().endpoint == "http://hub.internal"


@pytest.mark.parametrize("name,value", [
    ("LABEL", "priority"), ("INFERENCE_BACKEND", "tensorrt"), ("MAX_BATCH", "0"), ("PORT", "70000"),
    ("HF_ENDPOINT", "ftp://hub"), ("TEXT_CLEANING", "strip"), ("MAX_REQUEST_BYTES", "0"),
])
def test_bad_setting_names_the_variable(clean_env, name, value):
    clean_env.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        load_settings()


def test_redact_hides_token_and_database_password(clean_env):
    clean_env.setenv("HF_TOKEN", "hf_secret")
    clean_env.setenv("FEEDBACK_DB_URL", "postgresql://u:pw9@db/f")
    message = redact("token hf_secret refused by postgresql://u:pw9@db/f", load_settings())
    assert "hf_secret" not in message and "pw9" not in message and "postgresql://u:***@db/f" in message
