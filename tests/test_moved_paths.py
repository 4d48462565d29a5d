"""The module paths of svllreid 0.1 (``svllreid.engine.*``, ``svllreid.eval.*``) keep working for one
release: each import warns where the user's code imports it and gives the same objects as the new path."""

from __future__ import annotations

import importlib
import sys
import warnings
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "svllreid"
#: Old modules whose contents were split between two new ones.
SPLIT = {
    "svllreid.engine.features": ("svllreid.inference.features", "svllreid.evaluation.model_eval"),
    "svllreid.engine.text_eval": ("svllreid.evaluation.text_eval", "svllreid.inference.text_encoding"),
    "svllreid.engine.options": ("svllreid.training.options", "svllreid.evaluation.options"),
    "svllreid.eval": ("svllreid.metrics",),
}


def _old_modules() -> list[str]:
    names = [
        f"svllreid.{folder}.{path.stem}" for folder in ("engine", "eval") for path in (PACKAGE / folder).glob("*.py")
    ]
    return sorted(n for n in names if not n.endswith(".__init__"))


def _fresh_import(name: str) -> object:
    """Import ``name`` as a user's first import of it would (its shim runs again)."""
    sys.modules.pop(name, None)
    return importlib.import_module(name)


def test_every_old_module_of_engine_and_eval_is_a_shim() -> None:
    # svllreid 0.1 had 28 engine modules and 12 eval modules; its 2 slow references moved to tests/reference.
    assert len(_old_modules()) == 38
    for name in _old_modules():
        source = (PACKAGE / Path(*name.split(".")[1:])).with_suffix(".py").read_text()
        assert "from svllreid._moved import" in source, name


@pytest.mark.parametrize("old", [n for n in _old_modules() if n not in SPLIT])
def test_an_old_module_is_the_new_module_and_warns(old: str) -> None:
    with pytest.warns(
        DeprecationWarning, match=r"moved to svllreid\.\w+(\.\w+)?; the old path is removed in svllreid 0\.3"
    ):
        module = _fresh_import(old)
    assert module.__name__ != old and not module.__name__.startswith(("svllreid.engine", "svllreid.eval."))
    assert sys.modules[old] is module is importlib.import_module(module.__name__)


@pytest.mark.parametrize("old", sorted(SPLIT))
def test_a_split_module_gives_every_public_name_of_its_new_modules(old: str) -> None:
    with pytest.warns(DeprecationWarning, match=" and ".join(SPLIT[old]) if len(SPLIT[old]) > 1 else SPLIT[old][0]):
        module = _fresh_import(old)
    for new in SPLIT[old]:
        source = importlib.import_module(new)
        public = getattr(source, "__all__", None) or [k for k in vars(source) if not k.startswith("_")]
        assert public and all(getattr(module, key) is getattr(source, key) for key in public), new


def test_users_imports_keep_working_and_the_warning_points_at_their_line() -> None:
    for name in ("svllreid.engine.inference", "svllreid.engine.features", "svllreid.eval", "svllreid.eval.ranking"):
        sys.modules.pop(name, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from svllreid.engine.features import EvalOptions, extract_file_features
        from svllreid.engine.inference import TrainedModel, load_trained_model
        from svllreid.eval import evaluate
        from svllreid.eval.ranking import RankingResult
    from svllreid.evaluation.model_eval import EvalOptions as NewEvalOptions
    from svllreid.inference.features import extract_file_features as new_extract
    from svllreid.inference.trained import TrainedModel as NewTrainedModel
    from svllreid.inference.trained import load_trained_model as new_load
    from svllreid.metrics import RankingResult as NewRankingResult
    from svllreid.metrics import evaluate as new_evaluate

    assert (EvalOptions, extract_file_features, TrainedModel, load_trained_model, evaluate, RankingResult) == (
        NewEvalOptions, new_extract, NewTrainedModel, new_load, new_evaluate, NewRankingResult
    )  # fmt: skip
    moved = [w for w in caught if issubclass(w.category, DeprecationWarning) and "moved to" in str(w.message)]
    assert len(moved) >= 4 and {Path(w.filename).name for w in moved} == {Path(__file__).name}
