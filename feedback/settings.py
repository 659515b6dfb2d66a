"""Settings of the feedback loop (environment variables FEEDBACK_*, plus ADMIN_TOKEN)."""
from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class FeedbackSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FEEDBACK_", frozen=True, case_sensitive=False, env_ignore_empty=True, extra="ignore"
    )

    confirmed_share: float = Field(0.2, ge=0, le=1, description="Share of confirmed-correct predictions added to the data.")
    min_text_chars: int = Field(10, ge=1, description="Shorter texts (after trimming) are dropped as too short.")
    min_train_rows: int = Field(50, ge=1, description="Refuse to publish a version whose train split is smaller.")
    heldout_share: float = Field(0.1, ge=0, lt=0.5, description="Share of new groups per label for validation, and again for test.")
    split_seed: int = Field(42, description="Seed of the group split and of the confirmed-prediction sample.")
    threshold: int = Field(50, ge=1, description="New reviewed reports that make a retrain due.")
    max_age_days: float = Field(7, gt=0, description="A retrain is also due when the oldest new reviewed report is this old.")
    tag_timeout_s: float = Field(60, gt=0, description="How long to wait for the new dataset tag to be visible.")
    job_lock_ttl_s: float = Field(6 * 3600, gt=0, description="A trigger lock older than this belongs to a dead run.")
    sambodhan_db_url: SecretStr | None = Field(
        None, description="Upstream Sambodhan's backend database (read-only): prepare imports its reviewed "
                          "misclassified_complaints rows before building the next dataset version.",
    )
    admin_token: SecretStr | None = Field(
        None, validation_alias=AliasChoices("ADMIN_TOKEN", "FEEDBACK_ADMIN_TOKEN"),
        description="Bearer token for POST /admin/retrain; unset: the endpoint refuses every call.",
    )
