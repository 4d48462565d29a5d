"""Dataset parsers, one module per benchmark, behind a name registry.

Importing this package registers every parser; use :func:`load_dataset` to parse one.
"""

from svllreid.data.datasets import (  # noqa: F401
    captions,
    folder,
    market1501,
    msmt17,
    pku,
    synthetic,
    vehicleid,
    veri776,
)
from svllreid.data.datasets.registry import (
    available_datasets,
    get_dataset_entry,
    load_caption_dataset,
    load_dataset,
)

__all__ = ["available_datasets", "get_dataset_entry", "load_caption_dataset", "load_dataset"]
