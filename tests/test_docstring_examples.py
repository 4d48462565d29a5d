"""The examples in the docstrings of the public API run as written (doctest)."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest
import torch

from svllreid.config import config_to_dict, load_config
from svllreid.inference.checkpoint import write_checkpoint
from svllreid.models import create_model

#: Modules whose docstrings hold examples, and how many examples each has at least.
EXAMPLES = {
    "svllreid.models.factory": 1,
    "svllreid.inference.extractor": 1,
    "svllreid.inference.trained": 1,
    "svllreid.search.index": 1,
    "svllreid.metrics.ranking": 1,
    "svllreid.export.pretrained": 1,
}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny network saved as 'svllreid train' saves one: what the examples call ``checkpoint``."""
    torch.manual_seed(0)
    model = create_model("svll-tiny-vit", 5, image_size=(64, 32), stride=8)
    config = load_config(
        None, ["data.image_size=[64,32]", "model.arch=svll-tiny-vit", "data.test_interpolation=bilinear"]
    )
    meta = {"spec": model.spec.to_dict(), "quick_gelu": False, "config": config_to_dict(config), "stage": 2}
    return str(write_checkpoint(tmp_path_factory.mktemp("doc") / "model.safetensors", model, meta))


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_the_docstring_examples_run_as_written(name: str, checkpoint: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SVLLREID_CACHE", str(tmp_path / "cache"))
    module = importlib.import_module(name)
    tests = [t for t in doctest.DocTestFinder().find(module, globs={"checkpoint": checkpoint}) if t.examples]
    assert len(tests) >= EXAMPLES[name], f"{name} has {len(tests)} docstring examples"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report: list[str] = []
    for test in tests:
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)
