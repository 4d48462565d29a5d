"""Dataset parsers, one module per benchmark, behind a name registry.

Importing this package registers every parser; use :func:`load_dataset` to parse one.
"""

from svllreid.data.datasets import folder, market1501, msmt17, pku, synthetic, vehicleid, veri776  # noqa: F401
from svllreid.data.datasets.registry import available_datasets, get_dataset_entry, load_dataset

__all__ = ["available_datasets", "get_dataset_entry", "load_dataset"]
