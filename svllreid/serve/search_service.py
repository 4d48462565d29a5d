"""A gallery index and its network loaded once for ``svllreid serve``: the web side of the search use
case (:class:`svllreid.inference.gallery_search.GallerySearch`), usable from Python as well.

A query is one of three kinds: an image (bytes from a client, decoded by
:func:`svllreid.data.uploads.decode_upload`), a description (through the checkpoint's text encoder), or
one of the gallery's own images (its stored feature, so clicking a result costs no encoding).
:meth:`SearchService.answer` takes any mix of them and makes one encoder call per kind, so that queries
that arrive together share a forward pass. Hits have the schema of ``svllreid search --json``
(:data:`svllreid.inference.gallery_search.HIT_KEYS`), with paths relative to the indexed folder, and
svllreid 0.1's keys ``index`` and ``name`` for one more release.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from svllreid.data.uploads import decode_upload
from svllreid.errors import UploadError
from svllreid.fileio import atomic_write_bytes
from svllreid.inference.calibration import Calibration
from svllreid.inference.gallery_search import Answer, GallerySearch, Query
from svllreid.inference.model_protocol import IndexingModel
from svllreid.inference.onnx_backend import ExportedModel
from svllreid.inference.trained import TrainedModel
from svllreid.search import GalleryIndex
from svllreid.search.live import LiveIndex, RenumberedError, uploads_folder

__all__ = ["MAX_LABEL_CHARS", "MAX_TEXT_CHARS", "MAX_TOPK", "THUMBNAIL_SIDE", "Answer", "Query", "SearchService"]

#: Most results one query may ask for.
MAX_TOPK = 200
#: Longest description accepted, in characters (CLIP's 77 tokens are a few hundred).
MAX_TEXT_CHARS = 2000
#: Longest side of a thumbnail.
THUMBNAIL_SIDE = 256
#: Longest identity or camera name of an added image.
MAX_LABEL_CHARS = 200
#: The file suffix of each image format an added image may have.
_SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "BMP": ".bmp", "GIF": ".gif", "TIFF": ".tif"}


class SearchService:
    """An index with the network that made it, in eval mode, ready for queries of every kind."""

    def __init__(
        self,
        index: GalleryIndex | LiveIndex,
        trained: IndexingModel,
        *,
        index_path: str | Path,
        calibration: Calibration | None = None,
    ):
        self.search = GallerySearch(
            index, trained, index_path=index_path, relative_paths=True, legacy_keys=True, calibration=calibration
        )
        self.index = self.search.index  # the live gallery (with the changes made since the index was built)
        self.trained = trained

    @property
    def text_error(self) -> str | None:
        """Why this index cannot answer descriptions (None: it can)."""
        return self.search.text_error

    @classmethod
    def open(
        cls,
        index_path: str | Path,
        checkpoint: str | Path | None = None,
        device: str = "auto",
        *,
        model_file: str | Path | None = None,
    ) -> SearchService:
        """Load ``index_path`` and its network: ``model_file`` (an exported ONNX file or OpenVINO IR, for
        image queries only), else ``checkpoint``, else the checkpoint the index names; checked to make
        the index's features.

        Raises:
            IndexFileError: not an index file. CheckpointError: no usable checkpoint, or another network.
            ValueError: an unreadable exported file.
        """
        search = GallerySearch.open(
            index_path, checkpoint=checkpoint, model_file=model_file, device=device, compiled=False
        )
        # compiled=False: a checkpoint gives the network itself, with its text encoder.
        model = cast("IndexingModel", search.model)
        return cls(search.index, model, index_path=index_path, calibration=search.calibration)

    # ------------------------------------------------------------------------------------------------
    # Queries (checked in the caller's thread; encoding waits for :meth:`answer`)
    # ------------------------------------------------------------------------------------------------

    def image_query(self, data: bytes, topk: int, *, filename: str = "") -> Query:
        """A query by an uploaded image (decoded and normalised here).

        Raises:
            UploadError: not an accepted image (see :func:`decode_upload`), or a bad ``topk``.
        """
        pixels = decode_upload(data, self.trained.image_size, self.trained.interpolation)
        about = {"filename": Path(filename).name} if filename else {}
        return self.search.image_query(pixels, self._topk(topk), about=about)

    def text_query(self, text: str, topk: int) -> Query:
        """A query by description.

        Raises:
            UploadError: an index that cannot answer text queries, an empty or overlong text, or a bad ``topk``.
        """
        query = self.search.text_query(text, topk)  # refuses an index without text, and an empty text
        if len(text) > MAX_TEXT_CHARS:
            raise UploadError(f"the description has {len(text)} characters; at most {MAX_TEXT_CHARS} are taken")
        self._topk(topk)
        return query

    def gallery_query(self, row: int, topk: int) -> Query:
        """A query by the gallery's image ``row`` (its stored feature); it is left out of its own results.

        Raises:
            UploadError: no such row (404), or a bad ``topk``.
        """
        query = self.search.gallery_query(row, topk)  # refuses a row the index does not have (404)
        self._topk(topk)
        return query

    def _topk(self, topk: int) -> int:
        if isinstance(topk, bool) or not isinstance(topk, int) or not 1 <= topk <= MAX_TOPK:
            raise UploadError(f"topk must be a whole number from 1 to {MAX_TOPK}; got {topk!r}")
        return topk

    def answer(self, queries: Sequence[Query]) -> list[Answer]:
        """The ranked gallery of each query, in order (see :meth:`GallerySearch.answer`)."""
        return self.search.answer(queries)

    # ------------------------------------------------------------------------------------------------
    # Changing the gallery (its change log: :mod:`svllreid.search.live`)
    # ------------------------------------------------------------------------------------------------

    def store_upload(self, data: bytes) -> Path:
        """Check an image uploaded for the gallery (decoded as a query image is) and store its bytes, under a
        new random name, in the index's :func:`~svllreid.search.live.uploads_folder`; returns the file.

        Raises:
            UploadError: not an accepted image (see :func:`decode_upload`).
        """
        from PIL import Image

        decode_upload(data, self.trained.image_size, self.trained.interpolation)
        with Image.open(io.BytesIO(data)) as image:
            suffix = _SUFFIXES.get(str(image.format), ".img")
        folder = uploads_folder(self.search.index_path)
        folder.mkdir(exist_ok=True)
        return atomic_write_bytes(folder / f"{uuid.uuid4().hex}{suffix}", data)

    @staticmethod
    def check_label(value: str | None, name: str) -> str | None:
        """An added image's ``identity`` or ``camera`` name, or None when not given.

        Raises:
            UploadError: too long, or with control characters.
        """
        if value is None or not value.strip():
            return None
        value = value.strip()
        if len(value) > MAX_LABEL_CHARS or not value.isprintable():
            raise UploadError(f"{name!r} must be a printable name of at most {MAX_LABEL_CHARS} characters")
        return value

    def add_stored(self, paths: Sequence[Path], identity: str | None = None, camera: str | None = None) -> list[int]:
        """Encode stored images with the network (call it on the thread that owns it) and add them to the
        live gallery with their labels; returns their rows.

        Raises:
            ValueError: a file that cannot be read (nothing is added).
        """
        labels = {kind: [name] * len(paths) for kind, name in (("identity", identity), ("camera", camera)) if name}
        rows, _ = self.search.add_files([str(p) for p in paths], labels=labels)
        return rows

    def remove(self, row: int, generation: str | None = None) -> None:
        """Remove gallery image ``row``, numbered in ``generation`` (default: the gallery's now): never
        returned or served again (its stored file, if the server stored it, is deleted).

        Raises:
            UploadError: no such row, or removed already (404); a ``generation`` that is not the gallery's
                any more, or a compaction just now (409): its rows were numbered afresh.
        """
        if generation is not None and generation != self.index.generation:
            raise UploadError(
                "the gallery was compacted since that row was given, and its rows are numbered afresh: search "
                "again for the image to remove",
                status=409,
            )
        generation = self.index.generation  # what the row is checked against
        try:
            self.index.remove([self.check_row(row)], generation=generation)
        except RenumberedError as err:
            raise UploadError(str(err), status=409) from None

    # ------------------------------------------------------------------------------------------------
    # The gallery's images
    # ------------------------------------------------------------------------------------------------

    def check_row(self, row: int) -> int:
        """``row`` if it is one of the index's images.

        Raises:
            UploadError: 404, with the valid range.
        """
        return self.search.check_row(row)

    def display_name(self, row: int) -> str:
        """Gallery image ``row``'s path under the folder the index was built from (else its file name)."""
        return self.search.display_name(row)

    def image_file(self, row: int) -> Path:
        """The file of gallery image ``row``: only ever a path the index lists.

        Raises:
            UploadError: no such row, or its file is gone (404).
        """
        path = Path(self.index.paths[self.check_row(row)])
        if not path.is_file():
            raise UploadError(f"gallery image {row} ({self.display_name(row)}) is no longer on disk", status=404)
        return path

    def thumbnail(self, row: int, side: int = THUMBNAIL_SIDE) -> bytes:
        """Gallery image ``row`` as a JPEG that fits in ``side`` × ``side`` (kept as is when smaller).

        Raises:
            UploadError: 404 for no such row, a file that is gone, or one that cannot be decoded (the
                message names the file).
        """
        from PIL import Image

        path = self.image_file(row)
        try:
            with Image.open(path) as image:
                image.draft("RGB", (side, side))  # JPEG: decode at a reduced scale where the photo is large
                rgb = image.convert("RGB")
        except Exception as err:  # PIL raises many types for corrupt data
            raise UploadError(
                f"gallery image {row} ({self.display_name(row)}) cannot be read: {err}", status=404
            ) from None
        rgb.thumbnail((side, side))
        out = io.BytesIO()
        rgb.save(out, format="JPEG", quality=88)
        return out.getvalue()

    def _model_facts(self) -> dict[str, Any]:
        model = self.trained
        if isinstance(model, TrainedModel):
            meta = model.checkpoint.meta
            return {
                "arch": model.spec.arch,
                "image_size": list(model.image_size),
                "trained_on": model.trained_on,
                "stage": meta.get("stage"),
                "epoch": meta.get("epoch"),
                "checkpoint": str(model.checkpoint.path),
                "device": str(model.device),
                "runtime": "torch",
                "description": model.describe(),
            }
        assert isinstance(model, ExportedModel)
        return {
            "arch": model.spec.get("arch"),
            "image_size": list(model.image_size),
            "trained_on": model.network.get("trained_on"),
            "stage": None,
            "epoch": None,
            "checkpoint": None,
            "model_file": str(model.path),
            "device": "cpu",
            "runtime": model.runtime,
            "description": model.describe(),
        }

    def describe(self) -> dict[str, Any]:
        """The model and the index, for a client: what they are and which queries they take."""
        return {
            "model": self._model_facts(),
            "index": {
                "file": str(self.search.index_path),
                "images": self.index.size,
                "rows": len(self.index),
                "added": self.index.added,
                "removed": self.index.removed,
                "generation": self.index.generation,
                "dim": self.index.dim,
                "backend": self.index.backend,
                "flip": self.search.flip,
                "labels": self.search.label_kinds,
            },
            "queries": {
                "image": True,
                "text": self.text_error is None,
                "text_unavailable": self.text_error,
                "max_topk": MAX_TOPK,
            },
        }
