"""Text rules shared by training and serving; torch-free, so the feedback store and the inference
Space import it without the model stack.

- `clean(text, mode)`: the cleaning a model sees its texts through, chosen by the setting
  TEXT_CLEANING: `sambodhan` (default) drops URLs and HTML tags and collapses newlines and
  whitespace, as upstream Sambodhan's classifier APIs and dataset preparation do, so a model
  trained on their datasets sees the same kind of text when served; `none` leaves texts as sent.
  Serving and training must use the same mode (`cleaning_from_env()` reads it).
- `unicode_problem(text)`: why a text cannot be classified or stored (a lone surrogate, a NUL).
"""
from __future__ import annotations

import os
import re

TEXT_CLEANING_ENV = "TEXT_CLEANING"
MODES = ("sambodhan", "none")
DEFAULT_MODE = "sambodhan"

_URL = re.compile(r"(?:https?://|www\.)\S+")
_HTML_TAG = re.compile(r"<[^>\n]*>")


def sambodhan_clean(text: str) -> str:
    """URLs and HTML tags removed, every run of whitespace (newlines too) one space, trimmed."""
    return " ".join(_HTML_TAG.sub("", _URL.sub("", text)).split())


def clean(text: str, mode: str = DEFAULT_MODE) -> str:
    if mode == "sambodhan":
        return sambodhan_clean(text)
    if mode == "none":
        return text
    raise ValueError(f"{TEXT_CLEANING_ENV}={mode!r}: use one of {list(MODES)}")


def cleaning_from_env() -> str:
    """The TEXT_CLEANING mode of this process (for the training side); a bad value names it."""
    mode = os.environ.get(TEXT_CLEANING_ENV) or DEFAULT_MODE
    if mode not in MODES:
        raise ValueError(f"{TEXT_CLEANING_ENV}={mode!r}: use one of {list(MODES)}")
    return mode


def unicode_problem(text: str) -> str | None:
    """What makes `text` unusable, or None. JSON may carry a lone UTF-16 surrogate ("\\ud800"),
    which no tokenizer or database can encode; PostgreSQL text cannot hold NUL."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return (f"has a lone surrogate U+{ord(text[error.start]):04X} at character {error.start}; "
                "send valid Unicode (UTF-8)")
    if "\x00" in text:
        return f"has a NUL character at character {text.index(chr(0))}; remove it"
    return None
