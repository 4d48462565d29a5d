"""svllreid: SVLL-ReID and CLIP-ReID image re-identification on open_clip.

The public entry points are imported lazily, so that light commands (``svllreid data ...``) do
not pay for importing open_clip.
"""

from typing import Any

from svllreid.version import __version__

_LAZY = {
    "create_model": "svllreid.models.factory",
    "evaluate": "svllreid.metrics.ranking",
    "RankingResult": "svllreid.metrics.ranking",
    "k_reciprocal_rerank": "svllreid.metrics.rerank",
    "KReciprocal": "svllreid.metrics.rerank",
    "load_trained_model": "svllreid.inference.trained",
    "from_pretrained": "svllreid.inference.trained",
    "save_pretrained": "svllreid.export.pretrained",
    "GalleryIndex": "svllreid.search",
    "FeatureExtractor": "svllreid.inference.extractor",
    "FeatureModel": "svllreid.inference.model_protocol",
    "GallerySearch": "svllreid.inference.gallery_search",
    "evaluate_model": "svllreid.evaluation.model_eval",
    "EvalOptions": "svllreid.evaluation.model_eval",
    "TestImages": "svllreid.inference.features",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'svllreid' has no attribute {name!r}")
