"""Atomic file writes shared by configs, checkpoints, features, indexes and reports."""

import errno
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from svllreid.errors import DiskFullError, OutputError

__all__ = [
    "DEFAULT_MODE",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_safetensors",
    "atomic_write_text",
    "cache_dir",
    "check_writable",
    "disk_full_error",
    "publish",
    "temporary_sibling",
]

#: What a full disk (or an exhausted quota) looks like from Python, and from safetensors' Rust writer.
_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_FULL_WORDS = ("No space left on device", "os error 28", "Disk quota exceeded", "os error 122")


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


def cache_dir() -> Path:
    """Where svllreid caches what it can make again (generated data, resized photos): ``$SVLLREID_CACHE``
    or ``~/.cache/svllreid``."""
    return Path(os.environ.get("SVLLREID_CACHE", "~/.cache/svllreid")).expanduser()


def publish(tmp: str | Path, path: str | Path, *, durable: bool = True) -> Path:
    """Flush ``tmp`` to disk (unless not ``durable``), give it the usual permissions and rename it to
    ``path`` (atomic)."""
    if durable:
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
    Path(tmp).chmod(DEFAULT_MODE)
    return Path(tmp).replace(path)


def check_writable(path: str | Path) -> Path:
    """Check, before any work, that a file can be written at ``path``: not a folder, and its folder
    exists (or can be made) and is writable. Returns the path.

    Raises:
        OutputError: what is in the way, and what to do instead.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a folder; give a file name (e.g. {path / 'out.npz'})")
    folder = path.parent
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise OutputError(f"cannot write {path}: {existing} is a file, not a folder; choose another path")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {path}: {existing} is not writable for this user; choose another path")
    return path


def disk_full_error(err: BaseException, path: Path) -> DiskFullError | None:
    """The clean error for ``err`` when it is a full disk while writing ``path``, else None."""
    full = (isinstance(err, OSError) and err.errno in _FULL_ERRNOS) or any(w in str(err) for w in _FULL_WORDS)
    if not full:
        return None
    try:
        free = f"{shutil.disk_usage(path.parent).free / 2**20:.0f} MiB free now"
    except OSError:
        free = "free space unknown"
    previous = "its previous version is intact" if path.exists() else "nothing was written there"
    return DiskFullError(
        f"the disk holding {path.parent} is full ({free}): could not write {path.name}; {previous} (writes are "
        "atomic). Free some space, or write to another disk (run.output_dir, --out)"
    )


def atomic_write(path: str | Path, write: Callable[[str], object], *, durable: bool = True) -> Path:
    """``write(tmp)`` into a temporary sibling of ``path``, then rename it over ``path``: a crash never
    leaves a half-written file and a reader never sees one. A full disk raises :class:`DiskFullError`.

    Args:
        durable: flush to disk before the rename; False for caches, where a lost file is only made again.
    """
    path = Path(path)
    tmp = temporary_sibling(path)
    try:
        write(tmp)
        return publish(tmp, path, durable=durable)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        clean = disk_full_error(err, path)
        if clean is not None:
            raise clean from err
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename, so a crash never leaves a
    half-written file behind and a reader never sees one. Parent folders are created."""
    path = Path(path)
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """:func:`atomic_write_bytes` of UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_safetensors(path: str | Path, tensors: dict, metadata: dict[str, str]) -> Path:
    """Write ``tensors`` (contiguous CPU tensors sharing no memory) and string ``metadata`` to a
    safetensors file, atomically as :func:`atomic_write_bytes` does."""
    from safetensors.torch import save_file

    path = Path(path)
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))
