"""Name -> parser registry behind :func:`load_dataset`."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from svllreid.data.types import CaptionDataset, Kind, ReIDDataset
from svllreid.errors import DatasetError

__all__ = [
    "DatasetEntry",
    "Parser",
    "Task",
    "available_datasets",
    "get_dataset_entry",
    "load_caption_dataset",
    "load_dataset",
    "register",
]

Parser = Callable[..., Any]
#: What a dataset is for: re-identification (query/gallery) or (image, caption) pairs.
Task = Literal["reid", "captions"]


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    kind: Kind
    description: str
    parser: Parser
    task: Task = "reid"
    #: A user's own small collection (not one of the paper's benchmarks): ``data.validation_ids=auto``
    #: holds training identities out to choose the checkpoint on, and ``data.image_size=auto`` is meant for it.
    own_data: bool = False
    #: Where an empty root reads the dataset from (it raises where there is no such copy), or None: the
    #: dataset needs a root (synthetic data makes its own).
    default_root: Callable[[], Path] | None = None

    @property
    def options(self) -> dict[str, Any]:
        """Parser options (keyword arguments besides ``root``) with their defaults."""
        params = inspect.signature(self.parser).parameters
        return {n: p.default for n, p in params.items() if n != "root"}


_REGISTRY: dict[str, DatasetEntry] = {}


def register(
    name: str,
    kind: Kind,
    description: str,
    *,
    task: Task = "reid",
    own_data: bool = False,
    default_root: Callable[[], Path] | None = None,
) -> Callable[[Parser], Parser]:
    """Decorator that makes a parser ``parser(root, **options)`` loadable by name: one returning a
    :class:`ReIDDataset` (``task="reid"``) or a :class:`CaptionDataset` (``task="captions"``).
    ``own_data`` and ``default_root``: see :class:`DatasetEntry`."""

    def wrap(parser: Parser) -> Parser:
        if name in _REGISTRY:
            raise ValueError(f"dataset {name!r} is registered twice")
        _REGISTRY[name] = DatasetEntry(name, kind, description, parser, task, own_data, default_root)
        return parser

    return wrap


def available_datasets(task: Task | None = None) -> list[str]:
    return sorted(name for name, entry in _REGISTRY.items() if task is None or entry.task == task)


def get_dataset_entry(name: str) -> DatasetEntry:
    """The registry entry of ``name``; an unknown name lists the available ones."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise DatasetError(f"unknown dataset {name!r}.{hint} Available: {', '.join(available_datasets())}")
    return _REGISTRY[name]


_USES = {"reid": "re-identification (train, eval)", "captions": "captions (pretrain, eval-text)"}


def _entry_for(name: str, task: Task) -> DatasetEntry:
    entry = get_dataset_entry(name)
    if entry.task != task:
        others = ", ".join(available_datasets(task))
        raise DatasetError(f"{name!r} is a {_USES[entry.task]} dataset, but this needs a {_USES[task]} one: {others}")
    return entry


def load_dataset(name: str, root: str = "", **options: Any) -> ReIDDataset:
    """Parse re-identification dataset ``name`` under ``root``.

    Args:
        name: a registered name (see :func:`available_datasets`).
        root: folder of the dataset (a CSV manifest for ``folder``).
        **options: parser-specific options; an unknown one is an error that lists the valid ones.
    """
    return _parse(_entry_for(name, "reid"), root, options)


def load_caption_dataset(name: str, root: str = "", **options: Any) -> CaptionDataset:
    """Parse caption dataset ``name`` under ``root`` (options as for :func:`load_dataset`)."""
    return _parse(_entry_for(name, "captions"), root, options)


def _parse(entry: DatasetEntry, root: str, options: dict[str, Any]) -> Any:
    name = entry.name
    valid = entry.options
    for key in options:
        if key not in valid:
            close = difflib.get_close_matches(key, list(valid), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            listed = ", ".join(valid) if valid else "none"
            raise DatasetError(f"dataset {name!r} has no option {key!r}.{hint} Its options: {listed}")
    return entry.parser(root, **options)
