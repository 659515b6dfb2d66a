"""Job settings: one frozen, validated model read from the environment and `--flags`.

The retrain Space receives its secrets and variables as environment variables, so every
setting is named by its environment variable (`LABEL`, `HF_TOKEN`, ...). A flag
`--early-stopping-patience 2` overrides `EARLY_STOPPING_PATIENCE`. `dump()` is the only view
of the settings that may leave the process (logs, W&B config, metadata.json).
"""
from __future__ import annotations

import argparse
import os
import re
import unicodedata
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REAL_HUB_ENDPOINT = "https://huggingface.co"
LOCAL_HUB_ENDPOINT = "http://127.0.0.1:18765"
DEFAULT_NAMESPACE = "retrainspace"
MASK = "***"
# One repo-name rule for the job and the local hub: each part of "namespace/name".
REPO_NAME_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
REPO_ID_RULE = "'namespace/name' (letters, digits, . _ -; each part starts with a letter or digit)"

LABEL_SETS: dict[str, list[str]] = {
    "department": [
        "Municipal Governance & Community Services",
        "Education, Health & Social Welfare",
        "Infrastructure, Utilities & Natural Resources",
        "Security & Law Enforcement",
    ],
    "urgency": ["NORMAL", "URGENT", "HIGHLY URGENT"],
}


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names the variable and the fix."""


def normalize_text(text: str) -> str:
    """What counts as 'the same text' everywhere (dataset checks, feedback dedup):
    NFKC, casefold, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def parse_split_aliases(value: str | None) -> dict[str, str]:
    """SPLIT_ALIASES 'eval:validation,dev:validation' -> {'eval': 'validation', 'dev': 'validation'}."""
    aliases = {}
    for item in (value or "").split(","):
        name, _, split = (part.strip() for part in item.partition(":"))
        if not (name and split) and item.strip():
            raise ValueError(f"{item.strip()!r} is not a name:split pair (e.g. eval:validation)")
        if name:
            aliases[name] = split
    return aliases


def mask_url(url: str | None) -> str | None:
    """Hide the password of a URL such as postgresql://user:pw@host/db."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", f":{MASK}@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def is_repo_id(value: str) -> bool:
    parts = value.split("/")
    return len(parts) == 2 and all(REPO_NAME_PART.match(part) for part in parts)


def repo_id_setting(value: str | None) -> str | None:
    if value is not None and not is_repo_id(value):
        raise ValueError(f"{value!r} is not a repo id: use {REPO_ID_RULE}")
    return value


def http_url(value: str | None) -> str | None:
    if value is not None and urlsplit(value).scheme not in ("http", "https"):
        raise ValueError(f"must be an http(s) URL, got {value!r}")
    return value.rstrip("/") if value else value


class HubSettings(BaseSettings):
    """Where the Hub is and how to reach it; shared by the job and the inference Space."""

    model_config = SettingsConfigDict(
        frozen=True, case_sensitive=False, env_ignore_empty=True, extra="ignore"
    )

    hf_token: SecretStr | None = Field(
        None, description="Hub token (write access for the job). Unset: use the embedded local hub."
    )
    hf_endpoint: str | None = Field(
        None, description="Hub base URL. Default: the real Hub with HF_TOKEN, else the local hub at LOCALHUB_URL "
        f"({LOCAL_HUB_ENDPOINT})."
    )

    _hf_endpoint_is_url = field_validator("hf_endpoint")(http_url)

    @property
    def token(self) -> str | None:
        return self.hf_token.get_secret_value() if self.hf_token else None

    @property
    def endpoint(self) -> str:
        if self.hf_endpoint:
            return self.hf_endpoint
        return REAL_HUB_ENDPOINT if self.hf_token else os.environ.get("LOCALHUB_URL", LOCAL_HUB_ENDPOINT)


class JobConfig(HubSettings):
    """Every setting of the retrain job, with its default and meaning."""

    # --- what to train ---------------------------------------------------------------
    label: Literal["department", "urgency"] = Field(
        description="Which classifier to retrain: 'department' (4 classes) or 'urgency' (3 classes)."
    )
    model_checkpoint: str | None = Field(
        None,
        description="Base model repo id or local folder. Default: xlm-roberta-base on the real Hub, "
        "the offline multilingual-e5-small conversion on the embedded hub.",
    )

    # --- where things live (and HF_TOKEN, HF_ENDPOINT) ------------------------------------
    namespace: str = Field(DEFAULT_NAMESPACE, description="Owner of the default repo ids.")
    dataset_repo_id: str | None = Field(None, description="Dataset repo. Default: <namespace>/grievance-<label>-data.")
    dataset_revision: str | None = Field(
        None, description="Pin a dataset version (tag or commit). Default: the newest v* tag."
    )
    hub_model_id: str | None = Field(None, description="Model repo to push and tag. Default: <namespace>/grievance-<label>-classifier.")
    space_repo_id: str | None = Field(None, description="Inference Space to restart. Default: <namespace>/grievance-<label>-api.")
    api_endpoint: str | None = Field(None, description="Deployed API base URL. Default: derived from the inference Space.")
    retrain_space_id: str | None = Field(
        None, description="This job's own Space, paused at the end. Default: SPACE_ID when running in a Space."
    )
    output_dir: Path = Field(Path("outputs"), description="Where checkpoints, the summary and metadata.json are written.")

    # --- W&B ---------------------------------------------------------------------------
    wandb_api_key: SecretStr | None = Field(None, description="W&B key; unset: W&B runs offline.")
    wandb_project_name: str = Field("retrainspace", description="W&B project.")
    wandb_mode: Literal["online", "offline", "disabled"] | None = Field(
        None, description="W&B mode. Default: online with WANDB_API_KEY, else offline."
    )

    # --- training ----------------------------------------------------------------------
    max_train_samples: int | None = Field(
        None, gt=0, description="Train on at most this many rows (a seeded sample), for quick runs and debugging. "
        "Default: every train row."
    )
    num_train_epochs: float = Field(3, gt=0, description="Training epochs.")
    train_batch_size: int = Field(16, gt=0, description="Per-device training batch size.")
    eval_batch_size: int = Field(32, gt=0, description="Per-device evaluation batch size.")
    gradient_accumulation_steps: int = Field(1, gt=0, description="Steps to accumulate before an update.")
    learning_rate: float = Field(2e-5, gt=0, lt=1, description="Peak learning rate.")
    weight_decay: float = Field(0.01, ge=0, lt=1, description="AdamW weight decay.")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="Share of steps used for warm-up.")
    eval_steps: int = Field(50, gt=0, description="Evaluate and checkpoint every N optimizer steps.")
    early_stopping_patience: int = Field(1, ge=0, description="Evaluations without macro-F1 gain before stopping (0: never stop early).")
    freeze_word_embeddings: bool = Field(
        False, description="Keep the input word embeddings fixed. On a CPU the optimizer step over a "
        "multilingual vocabulary (96M of multilingual-e5-small's 118M weights) costs more than forward and backward.",
    )
    max_length: int = Field(128, gt=0, le=8192, description="Truncate texts to this many tokens.")
    focal_gamma: float = Field(2.0, ge=0, description="Focal loss focusing parameter (0 = cross-entropy).")
    focal_alpha: str = Field(
        "balanced",
        description="Focal loss class weights: 'balanced' (inverse class frequency), 'none', "
        "a single number, or one number per class separated by commas.",
    )
    precision: Literal["auto", "fp32", "fp16", "bf16"] = Field(
        "auto", description="Numeric precision. auto: bf16/fp16 on CUDA, fp32 on CPU."
    )
    seed: int = Field(42, description="Seed for training, sampling and bootstrap.")

    # --- recipe and calibration (see recipe.py) ------------------------------------------
    recipe: Literal["auto", "card"] = Field(
        "auto", description="auto: adapt what is not set explicitly to the data size and device (epochs raised to "
        "MIN_TRAIN_STEPS, early stopping not before it, lr by encoder width: 1e-4 for small encoders, 5e-3 for toy ones, "
        "sparse word-embedding updates on CPU). card: the settings as given.",
    )
    min_train_steps: int = Field(
        150, ge=0, description="RECIPE=auto: raise the epochs (unless NUM_TRAIN_EPOCHS is set) until training makes "
        "at least this many optimizer steps.",
    )
    word_embeddings: Literal["auto", "full", "sparse", "frozen"] = Field(
        "auto", description="How the input word embeddings train: full AdamW, sparse (only the rows a batch touches; "
        "one process), frozen. auto: sparse on a CPU with RECIPE=auto, else full. FREEZE_WORD_EMBEDDINGS=true wins.",
    )
    pooling: Literal["auto", "cls", "mean"] = Field(
        "auto", description="What the classifier reads. cls: the architecture's own head (BERT: the first token "
        "through the pooler). mean: a mean-pooling layer is appended (BERT-type encoders). auto: mean with RECIPE=auto "
        "when a BERT-type checkpoint ships no trained pooler (multilingual-e5 was trained with mean pooling), else cls.",
    )
    head_init: Literal["auto", "probe", "random"] = Field(
        "auto", description="How the classification head starts. probe: a logistic regression fitted on the frozen "
        "encoder's features (its strength chosen on validation macro-F1), then fine-tuned (LP-FT). random: "
        "transformers' initialisation. auto: probe with RECIPE=auto for a new head (random when the probe does no "
        "better than chance on validation), random with RECIPE=card; a head that came trained with the checkpoint "
        "(same labels) is kept.",
    )
    calibrate: bool = Field(
        True, description="Fit a temperature on the validation split so served confidences are calibrated.",
    )
    search_budget_s: float = Field(
        0, ge=0, description="Seconds for an optional hyperparameter search (optuna) over learning rate, epochs and "
        "focal gamma, chosen on validation macro-F1; the model is then trained once more with the best values. "
        "0: no search.",
    )
    search_max_trials: int = Field(20, gt=0, description="At most this many search trials within SEARCH_BUDGET_S.")

    # --- dataset validation ------------------------------------------------------------
    text_cleaning: Literal["sambodhan", "none"] = Field(
        "sambodhan", description="How texts are cleaned before the model, in training as in the inference Space "
        "(TEXT_CLEANING there too): 'sambodhan' drops URLs and HTML tags and collapses whitespace; 'none' keeps them.")
    unknown_label_policy: Literal["fail", "drop"] = Field("fail", description="Rows whose label is not in the LABEL set.")
    empty_text_policy: Literal["fail", "drop"] = Field("drop", description="Rows with an empty or whitespace text.")
    duplicate_policy: Literal["fail", "drop"] = Field("drop", description="Exact duplicate texts inside a split.")
    leakage_policy: Literal["fail", "drop"] = Field("fail", description="Validation/test rows that also occur (or nearly) in train.")
    max_leakage_ratio: float = Field(0.01, ge=0, lt=1, description="Leaked share of a split tolerated before leakage_policy applies.")
    near_duplicate_threshold: float = Field(0.8, gt=0, le=1, description="Character n-gram Jaccard similarity that counts as a near-duplicate.")

    # --- compare with the deployed model and decide --------------------------------------
    deployed_sample_size: int = Field(300, gt=0, description="Stratified test samples scored by both models.")
    decision_threshold: float = Field(0.001, ge=0, lt=1, description="Minimum macro-F1 gain (candidate - deployed) to promote.")
    class_f1_tolerance: float = Field(0.05, ge=0, le=1, description="Largest per-class F1 drop allowed when promoting.")
    require_ci_above_zero: bool = Field(False, description="Also require the bootstrap CI's lower bound of ΔF1 > 0.")
    first_deploy_min_f1: float = Field(0.3, ge=0, le=1, description="Macro-F1 floor for the first deploy (no model deployed yet).")
    bootstrap_samples: int = Field(1000, gt=0, description="Paired bootstrap resamples for the ΔF1 confidence interval.")
    deployed_timeout_s: float = Field(30, gt=0, description="Timeout of one request to the deployed API.")
    deployed_retries: int = Field(3, ge=0, description="Retries (with backoff) of a failed request to the deployed API.")
    deployed_batch_size: int = Field(32, gt=0, description="Texts per /predict/batch request.")
    deployed_concurrency: int = Field(8, gt=0, description="Parallel /predict requests when /predict/batch is missing.")
    max_failed_samples: int = Field(3, ge=0, description="Samples the deployed API may fail on before the run fails.")
    space_wake_timeout_s: float = Field(300, gt=0, description="How long to wait for a sleeping or building Space to answer.")
    wake_deployed: bool = Field(
        False, description="Restart a PAUSED inference Space for the comparison and pause it again afterwards "
        "(also when the run fails). Default: a paused Space stops the run before training.")

    # --- deploy ----------------------------------------------------------------------------
    serving_timeout_s: float = Field(600, gt=0, description="How long the restarted inference Space may take to serve the new version.")
    keep_versions: int = Field(5, gt=0, description="Promoted versions kept discoverable for rollback.")
    promotion_mode: Literal["direct", "canary", "shadow"] = Field(
        "direct", description="How a promoted version reaches the inference Space. direct: MODEL_REVISION moves to "
        "it. canary: it answers CANARY_SHARE of the requests next to the served version until the next run (or "
        "`train_model.py canary`) decides from the feedback. shadow: it scores every request, the served version "
        "answers. The first deploy is always direct.")
    canary_share: float = Field(
        0.1, description="PROMOTION_MODE=canary: the share of requests, in [0, 1], the canary answers (a hash of "
        "the text picks them).")
    canary_min_feedback: int = Field(
        20, gt=0, description="Feedback reports with a corrected label, received while the canary runs, needed "
        "before the canary is promoted or aborted on its figures.")
    canary_max_accuracy_drop: float = Field(
        0.02, ge=0, le=1, description="A canary whose accuracy on those reports is lower than the served "
        "version's by more than this is aborted; otherwise it is promoted.")
    lock_ttl_s: float = Field(6 * 3600, gt=0, description="Age after which a run lock left by a dead run is ignored.")

    # --- datasets from other producers (Sambodhan's push_to_hub) -------------------------
    text_column: str | None = Field(
        None, description="Column holding the text. Default: 'text', else 'grievance' (Sambodhan) if only that exists.")
    label_column: str | None = Field(
        None, description="Column holding the label, as names or integer ids. Default: the LABEL name, else 'label' "
        "(Sambodhan). Ids are named by the parquet ClassLabel names, dataset_metadata.json, or the LABEL's id order.")
    split_aliases: str | None = Field(
        None, description="Other split names as name:split pairs, e.g. 'eval:validation,dev:validation'. Default: "
        "eval, dev, valid or val is the validation split when there is no validation split.")
    dataset_layout: Literal["auto", "root", "data"] = Field(
        "auto", description="Which split files a commit holding both layouts is: 'root' (train.csv, ...) or 'data' "
        "(push_to_hub's data/<split>-*.parquet). auto: the only layout present.")
    validation_fraction: float = Field(
        0.1, gt=0, lt=1, description="Share of train, by near-duplicate family, carved out as validation when a "
        "version has no validation split.")

    _api_endpoint_is_url = field_validator("api_endpoint")(http_url)
    _repo_ids = field_validator("dataset_repo_id", "hub_model_id", "space_repo_id", "retrain_space_id")(repo_id_setting)

    @field_validator("namespace")
    @classmethod
    def _namespace_is_a_repo_name(cls, value: str) -> str:
        if not REPO_NAME_PART.match(value):
            raise ValueError(f"{value!r} cannot own repos: use letters, digits, . _ - (see {REPO_ID_RULE})")
        return value

    @field_validator("canary_share")
    @classmethod
    def _share_of_requests(cls, value: float) -> float:
        if not 0 <= value <= 1:
            raise ValueError(f"{value} is not a share of requests: use a number in [0, 1], e.g. 0.1 for 10%")
        return value

    @field_validator("split_aliases")
    @classmethod
    def _aliases_parse(cls, value: str | None) -> str | None:
        parse_split_aliases(value)
        return value

    @field_validator("search_budget_s")
    @classmethod
    def _search_needs_optuna(cls, value: float) -> float:
        if value > 0:
            try:
                import optuna  # noqa: F401
            except ImportError:
                raise ValueError("SEARCH_BUDGET_S > 0 needs optuna, which is not installed: pip install optuna==5.0.0 "
                                 "(pinned in requirements.txt), or set SEARCH_BUDGET_S=0 to train without a search") from None
        return value

    @field_validator("focal_alpha")
    @classmethod
    def _alpha_spec(cls, value: str) -> str:
        value = value.strip().lower()
        if value in ("balanced", "none"):
            return value
        try:
            numbers = [float(x) for x in value.split(",")]
        except ValueError:
            raise ValueError("use 'balanced', 'none', a number, or comma-separated numbers") from None
        if any(x < 0 for x in numbers):
            raise ValueError("class weights must be >= 0")
        return value

    @model_validator(mode="after")
    def _alpha_matches_labels(self) -> "JobConfig":
        alpha = self.alpha_weights()
        if isinstance(alpha, list) and len(alpha) != len(self.labels):
            raise ValueError(
                f"FOCAL_ALPHA has {len(alpha)} weights but LABEL={self.label} has {len(self.labels)} classes"
            )
        return self

    # --- derived values --------------------------------------------------------------
    @property
    def labels(self) -> list[str]:
        return LABEL_SETS[self.label]

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.labels)}

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.labels))

    @property
    def embedded(self) -> bool:
        """No HF_TOKEN: the project's own local hub (at HF_ENDPOINT when the local hub started this
        job as a Space, else LOCALHUB_URL or the default); it must already run (`python -m localhub serve`)."""
        return self.hf_token is None

    @property
    def base_model(self) -> str:
        if self.model_checkpoint:
            return self.model_checkpoint
        return f"{self.namespace}/multilingual-e5-small" if self.embedded else "xlm-roberta-base"

    @property
    def dataset_repo(self) -> str:
        return self.dataset_repo_id or f"{self.namespace}/grievance-{self.label}-data"

    @property
    def model_repo(self) -> str:
        return self.hub_model_id or f"{self.namespace}/grievance-{self.label}-classifier"

    @property
    def inference_space(self) -> str:
        return self.space_repo_id or f"{self.namespace}/grievance-{self.label}-api"

    @property
    def retrain_space(self) -> str | None:
        return self.retrain_space_id or os.environ.get("SPACE_ID")

    @property
    def wandb_effective_mode(self) -> str:
        return self.wandb_mode or ("online" if self.wandb_api_key else "offline")

    def alpha_weights(self) -> str | float | list[float] | None:
        """'balanced', None, one weight for every class, or a weight per class."""
        if self.focal_alpha == "balanced":
            return "balanced"
        if self.focal_alpha == "none":
            return None
        numbers = [float(x) for x in self.focal_alpha.split(",")]
        return numbers[0] if len(numbers) == 1 else numbers

    def __repr__(self) -> str:
        return f"JobConfig({self.dump()})"

    __str__ = __repr__

    def dump(self) -> dict[str, Any]:
        """All settings, resolved, JSON-ready, with every secret masked."""
        data = self.model_dump(mode="json")
        for name, value in data.items():
            if isinstance(getattr(self, name), SecretStr):
                data[name] = MASK
            elif isinstance(value, str) and "://" in value:
                data[name] = mask_url(value)
        data.update(
            endpoint=mask_url(self.endpoint),
            embedded=self.embedded,
            base_model=self.base_model,
            dataset_repo=self.dataset_repo,
            model_repo=self.model_repo,
            inference_space=self.inference_space,
            retrain_space=self.retrain_space,
            wandb_effective_mode=self.wandb_effective_mode,
            labels=self.labels,
        )
        return data


# --------------------------------------------------------------------------------------
# Loading from the environment and the command line


SECRET_FIELDS = ("hf_token", "wandb_api_key")


def env_name(field: str) -> str:
    return field.upper()


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """One `--flag` per setting, with the setting's description and default as help."""
    group = parser.add_argument_group("settings (each also read from the environment variable in capitals)")
    for name, info in JobConfig.model_fields.items():
        if name in SECRET_FIELDS:
            continue  # secrets come from the environment only: a flag would show in `ps`
        group.add_argument(_flag(name), dest=name, default=None, metavar=env_name(name),
                           help=f"{info.description}{default_note(info)}")


def default_note(info) -> str:
    """The default once: a derived one is already in the description ("Default: ...")."""
    if "Default:" in (info.description or ""):
        return ""
    if info.is_required():
        return " (required)"
    return " (default: unset)" if info.default is None else f" (default: {info.default})"


def describe_errors(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else "settings"
        where = f"{env_name(field)} (flag {_flag(field)})" if field in JobConfig.model_fields else field
        if item["type"] == "missing" and field in JobConfig.model_fields:
            lines.append(f"  {where}: required. {JobConfig.model_fields[field].description}")
        else:
            lines.append(f"  {where}: {item['msg'].removeprefix('Value error, ')}")
    return "invalid settings:\n" + "\n".join(lines) + "\nFix the variable in the Space settings or pass the flag."


def load_config(overrides: dict[str, Any] | None = None) -> JobConfig:
    """Settings from the environment, with `overrides` (from flags) taking precedence."""
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    try:
        return JobConfig(**given)
    except ValidationError as error:
        raise ConfigError(describe_errors(error)) from None
