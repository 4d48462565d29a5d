"""Atomic file writes shared by configs, checkpoints, features, indexes and reports."""

import os
import tempfile
from pathlib import Path


def _read_umask() -> int:
    umask = os.umask(0)  # the only way to read it; done once, at import, before any writer thread starts
    os.umask(umask)
    return umask


#: The permissions a plain ``open()`` gives a new file (0666 less the umask). Temporary files are
#: created 0600, which would otherwise stay on the result.
DEFAULT_MODE = 0o666 & ~_read_umask()


def temporary_sibling(path: Path) -> str:
    """A new, empty temporary file next to ``path`` (same file system, so the final rename is atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    return tmp


def publish(tmp: str | Path, path: str | Path) -> Path:
    """Flush ``tmp`` to disk, give it the usual permissions and rename it to ``path`` (atomic)."""
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    Path(tmp).chmod(DEFAULT_MODE)
    return Path(tmp).replace(path)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename, so a crash never leaves a
    half-written file behind and a reader never sees one. Parent folders are created."""
    path = Path(path)
    tmp = temporary_sibling(path)
    try:
        Path(tmp).write_bytes(data)
        return publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> Path:
    """:func:`atomic_write_bytes` of UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_safetensors(path: str | Path, tensors: dict, metadata: dict[str, str]) -> Path:
    """Write ``tensors`` (contiguous CPU tensors sharing no memory) and string ``metadata`` to a
    safetensors file, atomically as :func:`atomic_write_bytes` does."""
    from safetensors.torch import save_file

    path = Path(path)
    tmp = temporary_sibling(path)
    try:
        save_file(tensors, tmp, metadata=metadata)
        return publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
