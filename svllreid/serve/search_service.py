"""A gallery index and its network loaded once, answering queries in batches: what ``svllreid serve``
runs behind its web page, usable from Python as well.

A query is one of three kinds: an image (bytes from a client, decoded by
:func:`svllreid.data.uploads.decode_upload`), a description (through the checkpoint's text encoder,
:mod:`svllreid.inference.text_query`), or one of the gallery's own images (its stored feature, so clicking
a result costs no encoding). :meth:`SearchService.answer` takes any mix of them and makes one encoder
call per kind, so that queries that arrive together share a forward pass.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from svllreid.data.uploads import decode_upload
from svllreid.errors import IndexFileError, UploadError
from svllreid.inference.features import Encoder, encode_batch
from svllreid.inference.text_query import DescriptionEncoder
from svllreid.inference.trained import TrainedModel, load_index_model, query_flip
from svllreid.precision import resolve_precision
from svllreid.search import GalleryIndex

#: Most results one query may ask for.
MAX_TOPK = 200
#: Longest description accepted, in characters (CLIP's 77 tokens are a few hundred).
MAX_TEXT_CHARS = 2000
#: Longest side of a thumbnail.
THUMBNAIL_SIDE = 256

QueryKind = Literal["image", "text", "gallery"]


@dataclass(frozen=True)
class Query:
    """One checked query: ``pixels`` (a normalised ``[3, H, W]`` image), ``text`` or a gallery ``row``,
    by ``kind``; ``about`` describes it in the answer (a file name, the text, the row's labels)."""

    kind: QueryKind
    topk: int
    pixels: torch.Tensor | None = None
    text: str | None = None
    row: int | None = None
    about: dict[str, Any] = field(default_factory=dict)


@dataclass
class Answer:
    """The ranked gallery of one query: ``query`` (what was asked, with its labels where known) and
    ``results`` (rank, score, row, name, and identity / camera / match where the index knows them)."""

    query: dict[str, Any]
    results: list[dict[str, Any]]


class SearchService:
    """An index with the network that made it, in eval mode, ready for queries of every kind."""

    def __init__(self, index: GalleryIndex, trained: TrainedModel, *, index_path: str | Path):
        self.index = index
        self.trained = trained
        self.index_path = Path(index_path)
        self.flip = query_flip(index.meta)
        self.labels = index.labels
        self.amp_dtype = resolve_precision("auto", trained.device)
        try:
            index.text_dim  # noqa: B018 - only the check
            self.text_error: str | None = None
        except IndexFileError as err:  # images still work; text queries get this message
            self.text_error = str(err)
        self._descriptions = DescriptionEncoder(trained) if self.text_error is None else None
        root = index.meta.get("images")
        self._root = Path(str(root)) if root else None

    @classmethod
    def open(cls, index_path: str | Path, checkpoint: str | Path | None = None, device: str = "auto") -> SearchService:
        """Load ``index_path`` and its network (``checkpoint``, else the one the index names, checked
        to make its features).

        Raises:
            IndexFileError: not an index file. CheckpointError: no usable checkpoint.
        """
        index = GalleryIndex.load(index_path)
        trained = load_index_model(index.meta, index_path, checkpoint, device, compiled=False)
        assert isinstance(trained, TrainedModel)  # compiled=False: the network itself, with its text encoder
        return cls(index, trained, index_path=index_path)

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
        return Query("image", self._topk(topk), pixels=self.trained.transform(pixels), about=about)

    def text_query(self, text: str, topk: int) -> Query:
        """A query by description.

        Raises:
            UploadError: an index that cannot answer text queries, an empty or overlong text, or a bad ``topk``.
        """
        if self.text_error is not None:
            raise UploadError(self.text_error, status=409)
        if not text.strip():
            raise UploadError("the description is empty; describe the person in a few words")
        if len(text) > MAX_TEXT_CHARS:
            raise UploadError(f"the description has {len(text)} characters; at most {MAX_TEXT_CHARS} are taken")
        return Query("text", self._topk(topk), text=text, about={"text": text})

    def gallery_query(self, row: int, topk: int) -> Query:
        """A query by the gallery's image ``row`` (its stored feature); it is left out of its own results.

        Raises:
            UploadError: no such row (404), or a bad ``topk``.
        """
        self.check_row(row)
        about = {"index": row, "name": self.display_name(row), **self._row_labels(row)}
        return Query("gallery", self._topk(topk), row=row, about=about)

    def _topk(self, topk: int) -> int:
        if isinstance(topk, bool) or not isinstance(topk, int) or not 1 <= topk <= MAX_TOPK:
            raise UploadError(f"topk must be a whole number from 1 to {MAX_TOPK}; got {topk!r}")
        return topk

    # ------------------------------------------------------------------------------------------------
    # Answering
    # ------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def answer(self, queries: Sequence[Query]) -> list[Answer]:
        """The ranked gallery of each query, in order: one image-encoder call for all image queries and
        one text-encoder call for all descriptions (on an approximate index, one per ``topk``)."""
        answers: list[Answer | None] = [None] * len(queries)
        # An approximate index searches more widely for a larger k (HNSW's efSearch grows with it), so
        # there a query is only batched with queries asking for as many results: each gets the answer
        # it would get alone. Exact search ranks the same whatever k.
        exact = self.index.backend in ("exact", "faiss-flat")
        groups: dict[tuple[str, int], list[int]] = {}
        for i, q in enumerate(queries):
            groups.setdefault((q.kind, 0 if exact or q.kind == "text" else q.topk), []).append(i)
        for (kind, _), rows in groups.items():
            chosen = [queries[i] for i in rows]
            # A gallery query asks for one more: itself, dropped below.
            k = min(max(q.topk for q in chosen) + (kind == "gallery"), len(self.index))
            if kind == "image":
                images = torch.stack([q.pixels for q in chosen if q.pixels is not None]).to(self.trained.device)
                unknown = torch.full((len(images),), -1, dtype=torch.long, device=images.device)
                encode: Encoder = self.trained.model.encode_image
                feats = encode_batch(encode, images, unknown, unknown, amp_dtype=self.amp_dtype, flip=self.flip)
                result = self.index.search(feats.cpu().numpy(), k)
            elif kind == "text":
                assert self._descriptions is not None  # text_query refused the texts otherwise
                encoded = self._descriptions.encode([q.text or "" for q in chosen])
                result = self.index.search_text(encoded.feats.numpy(), k)
                cut = set(encoded.truncated)
            else:
                result = self.index.search(self.index.feats[[q.row for q in chosen if q.row is not None]], k)
            for j, (i, q) in enumerate(zip(rows, chosen, strict=True)):
                extra = {"truncated": q.text in cut} if kind == "text" else {}
                answers[i] = self._ranked(q, result.scores[j], result.indices[j], extra)
        return [a for a in answers if a is not None]

    def _ranked(self, query: Query, scores: np.ndarray, rows: np.ndarray, extra: dict[str, Any]) -> Answer:
        known = query.about.get("identity") if query.kind == "gallery" else None
        hits: list[dict[str, Any]] = []
        for score, row in zip(scores, rows, strict=True):
            if row < 0 or (query.kind == "gallery" and row == query.row):
                continue
            hit = {"rank": len(hits) + 1, "score": float(score), "index": int(row), "name": self.display_name(int(row))}
            hit.update(self._row_labels(int(row)))
            if known is not None and "identity" in hit:
                hit["match"] = hit["identity"] == known
            hits.append(hit)
            if len(hits) == query.topk:
                break
        return Answer({"kind": query.kind, **query.about, **extra}, hits)

    # ------------------------------------------------------------------------------------------------
    # The gallery's images
    # ------------------------------------------------------------------------------------------------

    def check_row(self, row: int) -> int:
        """``row`` if it is one of the index's images.

        Raises:
            UploadError: 404, with the valid range.
        """
        if isinstance(row, bool) or not isinstance(row, int) or not 0 <= row < len(self.index):
            raise UploadError(
                f"no gallery image {row!r}: the index holds images 0 to {len(self.index) - 1}", status=404
            )
        return row

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

    def display_name(self, row: int) -> str:
        """Gallery image ``row``'s path under the folder the index was built from (else its file name)."""
        path = Path(self.index.paths[row])
        if self._root is not None and path.is_relative_to(self._root):
            return path.relative_to(self._root).as_posix()
        return path.name

    def _row_labels(self, row: int) -> dict[str, str]:
        return {kind: names[row] for kind, names in self.labels.items()}

    def describe(self) -> dict[str, Any]:
        """The model and the index, for a client: what they are and which queries they take."""
        spec = self.trained.spec
        meta = self.trained.checkpoint.meta
        return {
            "model": {
                "arch": spec.arch,
                "image_size": list(self.trained.image_size),
                "trained_on": self.trained.trained_on,
                "stage": meta.get("stage"),
                "epoch": meta.get("epoch"),
                "checkpoint": str(self.trained.checkpoint.path),
                "device": str(self.trained.device),
                "description": self.trained.describe(),
            },
            "index": {
                "file": str(self.index_path),
                "images": len(self.index),
                "dim": self.index.dim,
                "backend": self.index.backend,
                "flip": self.flip,
                "labels": sorted(self.labels),
            },
            "queries": {
                "image": True,
                "text": self.text_error is None,
                "text_unavailable": self.text_error,
                "max_topk": MAX_TOPK,
            },
        }
