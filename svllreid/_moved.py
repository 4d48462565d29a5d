"""Old module paths that keep working for one release, with a DeprecationWarning.

``svllreid.engine`` was split by job (``training``, ``evaluation``, ``export``, ``inference``, ``serve``)
and ``svllreid.eval`` became ``svllreid.metrics``. Each old module is a two-line file that calls
:func:`alias` (the old name becomes the new module itself, so ``isinstance`` checks and monkeypatches
see one object) or :func:`merge` (an old module whose contents now live in two modules).
The new modules are imported by name, not by ``import`` statements, so the import contracts see no
edge from the old packages: nothing in svllreid may use them.
"""

from __future__ import annotations

import importlib
import sys
import warnings

__all__ = ["alias", "merge"]

#: The release after which the old paths are removed.
REMOVED_IN = "0.3"


def _stacklevel() -> int:
    """The level of the first frame outside the import machinery and this module's shims: the user's
    ``import`` line, so that Python's default filter shows the warning where ``__main__`` imports.
    :func:`warnings.warn` does not count the import machinery's frames, so neither does this."""
    level, frame = 1, sys._getframe(1)
    while frame is not None:
        internal = frame.f_code.co_filename.startswith("<frozen importlib")
        name = frame.f_globals.get("__name__", "")
        if not internal and name != __name__ and not _is_shim(name):
            return level
        level += not internal
        frame = frame.f_back  # type: ignore[assignment]
    return level


def _is_shim(name: str) -> bool:
    return name in ("svllreid.engine", "svllreid.eval") or name.startswith(("svllreid.engine.", "svllreid.eval."))


def _warn(old: str, new: str) -> None:
    warnings.warn(
        f"{old} moved to {new}; the old path is removed in svllreid {REMOVED_IN}: import from {new}",
        DeprecationWarning,
        stacklevel=_stacklevel(),
    )


def alias(old: str, new: str) -> None:
    """Make module ``old`` the module ``new`` (called from ``old`` while it is being imported)."""
    _warn(old, new)
    sys.modules[old] = importlib.import_module(new)


def merge(old: str, *new: str) -> None:
    """Give module ``old`` every public name of the modules ``new`` (its contents were split between them)."""
    _warn(old, " and ".join(new))
    module = sys.modules[old]
    for name in new:
        source = importlib.import_module(name)
        public = getattr(source, "__all__", None) or [k for k in vars(source) if not k.startswith("_")]
        for key in public:
            setattr(module, key, getattr(source, key))
