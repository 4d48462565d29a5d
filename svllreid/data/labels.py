"""How label text becomes integer ids, the one set of rules for the dataset parsers and for the labels
``svllreid extract`` reads from a user's files (pure Python)."""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["identity_numbers", "integer_names", "is_integer", "number_labels", "regex_group"]


def regex_group(regex: re.Pattern[str], match: re.Match[str], *names: str) -> str:
    """The first of the groups ``names`` that the expression has, else its first group, else the whole match."""
    for name in names:
        if name in regex.groupindex:
            return match.group(name)
    return match.group(1 if regex.groups else 0)


def is_integer(text: str) -> bool:
    """Whether a label is written as an integer (a sign allowed)."""
    return text.lstrip("-").isdigit()


def integer_names(names: Iterable[str]) -> bool:
    """Whether identity names are all non-negative integers, which :func:`identity_numbers` keeps."""
    return all(name.isdigit() for name in names)


def number_labels(labels: Iterable[str]) -> dict[str, int]:
    """Number labels 0, 1, ... in sorted order (numerically when they are all integers): cameras."""
    unique = set(labels)
    numeric = all(is_integer(label) for label in unique)
    ordered = sorted(unique, key=int) if numeric else sorted(unique)
    return {label: i for i, label in enumerate(ordered)}


def identity_numbers(names: Iterable[str]) -> dict[str, int]:
    """Identities: integer names keep their value; other names are numbered in sorted order."""
    unique = set(names)
    if integer_names(unique):
        return {name: int(name) for name in unique}
    return number_labels(unique)
