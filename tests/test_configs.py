import json

import pytest

from configs import ConfigError, load_config


def test_label_selects_label_set_and_repo_names(monkeypatch):
    monkeypatch.setenv("LABEL", "urgency")
    cfg = load_config()
    assert cfg.id2label == {0: "NORMAL", 1: "URGENT", 2: "HIGHLY URGENT"}
    assert cfg.model_repo.endswith("grievance-urgency-classifier")
    assert cfg.embedded


def test_unknown_label_names_the_variable(monkeypatch):
    monkeypatch.setenv("LABEL", "priority")
    with pytest.raises(ConfigError, match="LABEL"):
        load_config()


def test_empty_env_value_uses_default_instead_of_crashing(monkeypatch):
    monkeypatch.setenv("LABEL", "department")
    monkeypatch.setenv("EARLY_STOPPING_PATIENCE", "")
    assert load_config().early_stopping_patience == 1


@pytest.mark.parametrize("name,value", [
    ("DECISION_THRESHOLD", "1.5"), ("DEPLOYED_SAMPLE_SIZE", "0"), ("TRAIN_BATCH_SIZE", "-4"),
    ("HF_ENDPOINT", "ftp://example"), ("FOCAL_ALPHA", "1,2"),
])
def test_bad_values_fail_naming_the_variable(monkeypatch, name, value):
    monkeypatch.setenv("LABEL", "urgency")
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        load_config()


def test_dump_masks_every_secret(monkeypatch):
    monkeypatch.setenv("LABEL", "urgency")
    monkeypatch.setenv("HF_TOKEN", "hf_FAKE_token_1234567890")
    monkeypatch.setenv("WANDB_API_KEY", "wandb_FAKE_key_0987654321")
    monkeypatch.setenv("HF_ENDPOINT", "https://user:p4ssw0rd@hub.example.org")
    cfg = load_config()
    text = json.dumps(cfg.dump()) + repr(cfg) + str(cfg)
    for secret in ("hf_FAKE_token_1234567890", "wandb_FAKE_key_0987654321", "p4ssw0rd"):
        assert secret not in text
    assert cfg.token == "hf_FAKE_token_1234567890"
    assert not cfg.embedded
