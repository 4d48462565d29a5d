"""The API's habits that a reviewer would otherwise have to remember (CONTRIBUTING.md)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "svllreid"
#: Positional parameters a public function may take once it has more than four parameters.
MAX_POSITIONAL = 4
#: The ReID evaluators' convention (torchreid's eval_func and every reference implementation): query
#: and gallery features, pids and camids in that order. Swapped arrays have other lengths and are refused.
#: The verification metrics take the same six arrays as the ranking.
ALLOWED = {"metrics/ranking.py:evaluate", "metrics/verification.py:verify", "metrics/verification.py:pair_scores"}


def _public_name(name: str) -> bool:
    return not name.startswith("_") or name == "__init__"


def _visit(node: ast.AST, where: str, prefix: str, public: bool):
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.ClassDef):
            yield from _visit(child, where, f"{prefix}{child.name}.", public and not child.name.startswith("_"))
        elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) and public and _public_name(child.name):
            yield f"{where}:{prefix}{child.name}", child


def _public_functions():
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        yield from _visit(tree, path.relative_to(PACKAGE).as_posix(), "", True)


def test_functions_with_more_than_four_parameters_take_the_rest_by_keyword() -> None:
    """A swapped float or flag in a long positional call would go unnoticed; keywords make it visible."""
    offenders = []
    checked = 0
    for name, node in _public_functions():
        args = node.args
        positional = [a.arg for a in args.posonlyargs + args.args if a.arg not in ("self", "cls")]
        if len(positional) + len(args.kwonlyargs) <= MAX_POSITIONAL:
            continue
        checked += 1
        if len(positional) > MAX_POSITIONAL and name not in ALLOWED:
            offenders.append(f"{name} ({len(positional)} positional: {', '.join(positional)})")
    assert checked > 40, "the scan found too few long signatures: is it looking at the package?"
    assert not offenders, "make the later parameters keyword-only (add '*'):\n  " + "\n  ".join(offenders)


def test_the_allowed_exceptions_still_exist() -> None:
    names = {name for name, _ in _public_functions()}
    assert names >= ALLOWED


def test_every_library_module_declares_its_public_names() -> None:
    """``__all__`` in every module that defines public names (the command line and the deprecated aliases
    aside), naming only what the module has: what ``import *`` and the API pages take."""
    import importlib

    missing, wrong = [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE).as_posix()
        if where.startswith(("cli/", "engine/", "eval/")) or where == "__main__.py":
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        defined = [
            n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef) and not n.name.startswith("_")
        ]
        declared = [
            n
            for n in tree.body
            if isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in n.targets)
        ]
        if defined and not declared:
            missing.append(where)
        if declared:
            name = "svllreid." + where.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
            module = importlib.import_module(name.removesuffix(".__init__"))
            wrong += [f"{where}: {n}" for n in module.__all__ if not hasattr(module, n)]
    assert not missing and not wrong, (missing, wrong)
