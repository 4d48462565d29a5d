"""Name -> parser registry behind :func:`load_dataset`."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from svllreid.data.types import DatasetError, Kind, ReIDDataset

Parser = Callable[..., ReIDDataset]


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    kind: Kind
    description: str
    parser: Parser

    @property
    def options(self) -> dict[str, Any]:
        """Parser options (keyword arguments besides ``root``) with their defaults."""
        params = inspect.signature(self.parser).parameters
        return {n: p.default for n, p in params.items() if n != "root"}


_REGISTRY: dict[str, DatasetEntry] = {}


def register(name: str, kind: Kind, description: str) -> Callable[[Parser], Parser]:
    """Decorator that makes a parser ``parser(root, **options) -> ReIDDataset`` loadable by name."""

    def wrap(parser: Parser) -> Parser:
        if name in _REGISTRY:
            raise ValueError(f"dataset {name!r} is registered twice")
        _REGISTRY[name] = DatasetEntry(name, kind, description, parser)
        return parser

    return wrap


def available_datasets() -> list[str]:
    return sorted(_REGISTRY)


def get_dataset_entry(name: str) -> DatasetEntry:
    """The registry entry of ``name``; an unknown name lists the available ones."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise DatasetError(f"unknown dataset {name!r}.{hint} Available: {', '.join(available_datasets())}")
    return _REGISTRY[name]


def load_dataset(name: str, root: str = "", **options: Any) -> ReIDDataset:
    """Parse dataset ``name`` under ``root``.

    Args:
        name: a registered name (see :func:`available_datasets`).
        root: folder of the dataset (a CSV manifest for ``folder``).
        **options: parser-specific options; an unknown one is an error that lists the valid ones.
    """
    entry = get_dataset_entry(name)
    valid = entry.options
    for key in options:
        if key not in valid:
            close = difflib.get_close_matches(key, list(valid), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            listed = ", ".join(valid) if valid else "none"
            raise DatasetError(f"dataset {name!r} has no option {key!r}.{hint} Its options: {listed}")
    return entry.parser(root, **options)
