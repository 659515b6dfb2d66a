"""Text rules shared by training and serving; torch-free, so the feedback store and the inference
Space import it without the model stack.

- `unicode_problem(text)`: why a text cannot be classified or stored (a lone surrogate, a NUL).
"""
from __future__ import annotations


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
