"""Search a gallery index: the one use case behind ``svllreid search`` and ``svllreid serve``.

:class:`GallerySearch` holds an index and the network that made it (whichever runtime:
:class:`~svllreid.inference.model_protocol.FeatureModel`), and answers three kinds of query with one
hit schema: image files (read, encoded and ranked in batches, as ``svllreid search`` does), decoded
images, descriptions (through the checkpoint's text encoder) and the gallery's own rows (their stored
features) as :class:`Query` objects (as the server does, batched by kind so that queries that arrive
together share a forward pass).

Every hit is a dict with the keys of :data:`HIT_KEYS`: ``rank``, ``score`` (cosine similarity),
``row`` (the gallery image's row in the index), ``path``, then ``identity`` and ``camera`` where the index
stores labels, ``match`` (whether the hit shows the query's identity) where the query's identity is
known: a query that is itself one of the gallery's images, and ``same_identity`` (``score >=`` the
model's calibrated threshold, :mod:`svllreid.inference.calibration`) for photo and gallery queries of a
calibrated model. Each answer's ``decision`` says which threshold and operating point that is, or that
the model is uncalibrated; description scores are on another scale and get no decision.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import torch

from svllreid.errors import CheckpointError, IndexFileError, UploadError
from svllreid.inference.calibration import Calibration, calibration_for_index, decision
from svllreid.inference.exported import load_exported_model
from svllreid.inference.features import Encoder, FileFeatures, encode_batch, extract_model_features
from svllreid.inference.model_protocol import FeatureModel
from svllreid.inference.text_query import DescriptionEncoder
from svllreid.inference.trained import TrainedModel, load_index_model, query_flip
from svllreid.precision import resolve_precision
from svllreid.search import GalleryIndex, SearchResult
from svllreid.search.live import LiveIndex

__all__ = ["HIT_KEYS", "IMAGE_BRANCH_ONLY", "Answer", "FileSearch", "GallerySearch", "Query", "QueryKind"]

#: The keys of a hit, in order; ``identity``, ``camera`` and ``match`` only where known.
HIT_KEYS = ("rank", "score", "row", "path", "identity", "camera", "match", "same_identity")

#: The decision of a description's answer: the threshold holds for image features only.
TEXT_DECISION = {
    "calibrated": False,
    "message": "no same-identity decision for a description: the threshold is calibrated on photo-to-photo scores",
}

QueryKind = Literal["image", "text", "gallery"]

#: Why a model without the checkpoint's text encoder cannot answer descriptions, and what to do.
IMAGE_BRANCH_ONLY = (
    "an exported file (ONNX or OpenVINO) holds only the image branch; text search needs the checkpoint's text "
    "encoder: "
    "pass --checkpoint CKPT, or nothing to use the checkpoint the index names"
)


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
    """The ranked gallery of one query: ``query`` (what was asked, with its labels where known),
    ``results`` (hits, see :data:`HIT_KEYS`) and ``decision`` (the threshold the hits' ``same_identity``
    follows, or why there is none: :func:`svllreid.inference.calibration.decision`) and ``generation``: the
    numbering of the gallery's rows the hits' rows are in (:attr:`svllreid.search.live.LiveIndex.generation`),
    or one before it, never after."""

    query: dict[str, Any]
    results: list[dict[str, Any]]
    decision: dict[str, Any] = field(default_factory=dict)
    generation: str = ""


@dataclass
class FileSearch:
    """The answers to image files, in the order of ``features.paths`` (the readable files), and the
    features with their timing and unreadable files."""

    answers: list[Answer]
    features: FileFeatures


class GallerySearch:
    """An index with the network that made it, in eval mode, ready for queries of every kind.

    Args:
        index: the gallery: a live one (its change log applied, see :mod:`svllreid.search.live`), or an index
            alone, which is then read with the change log of ``index_path``.
        model: the network that made the index's features (checked by the caller, see :meth:`open`).
        index_path: the index's file, for messages.
        relative_paths: give each hit's ``path`` relative to the folder the index was built from (a
            server does, so that it never shows its clients its file system); else as the index stores it.
        legacy_keys: also give each hit the keys of svllreid 0.1's web API, ``index`` (= ``row``) and
            ``name`` (= the relative path); removed in svllreid 0.3.
        calibration: the same-identity threshold of the index's network (None: uncalibrated).
    """

    def __init__(
        self,
        index: GalleryIndex | LiveIndex,
        model: FeatureModel,
        *,
        index_path: str | Path,
        relative_paths: bool = False,
        legacy_keys: bool = False,
        calibration: Calibration | None = None,
    ):
        self.index = index if isinstance(index, LiveIndex) else LiveIndex(index_path, index)
        self.calibration = calibration
        self.model = model
        self.index_path = Path(index_path)
        self.flip = query_flip(index.meta)
        self.amp_dtype = resolve_precision("auto", model.device)
        self.relative_paths = relative_paths
        self.legacy_keys = legacy_keys
        self.text_error: str | None = None
        self._descriptions: DescriptionEncoder | None = None
        if not isinstance(model, TrainedModel):
            self.text_error = IMAGE_BRANCH_ONLY
        else:
            try:
                index.text_dim  # noqa: B018 - only the check
            except IndexFileError as err:  # images still work; text queries get this message
                self.text_error = str(err)
            else:
                try:
                    self._descriptions = DescriptionEncoder(model)
                except CheckpointError as err:  # a converted model without CLIP's token embedding
                    self.text_error = str(err)
        root = index.meta.get("images")
        self._root = Path(str(root)) if root else None

    @property
    def label_kinds(self) -> list[str]:
        """The kinds of labels the gallery's images have (``identity``, ``camera``), if any."""
        return self.index.label_kinds

    @functools.cached_property
    def _rows(self) -> dict[str, int]:
        """The index's row of each gallery file (absolute path), to find query files that are gallery
        images; built on the first file search, and only where the index has labels to give them."""
        if not self.label_kinds:
            return {}
        index = self.index
        return {str(Path(path).absolute()): i for i, path in enumerate(index.paths) if index.is_live(i)}

    @classmethod
    def open(
        cls,
        index_path: str | Path,
        *,
        checkpoint: str | Path | None = None,
        model_file: str | Path | None = None,
        device: str = "auto",
        compiled: bool = True,
        text: bool = False,
        relative_paths: bool = False,
        legacy_keys: bool = False,
    ) -> GallerySearch:
        """Load ``index_path`` and the network that encodes its queries: ``model_file`` (an exported ONNX or OpenVINO
        file), else ``checkpoint``, else the checkpoint the index names; each checked to make the index's
        features.

        Args:
            compiled: on the CPU, use the checkpoint's cached compiled image branch when there is one
                (fast start-up; image queries only).
            text: descriptions will be asked: load the network itself, with its text encoder (the index
                is checked to answer text queries before the network loads).

        Raises:
            IndexFileError: not an index file, or (``text``) one without f_proj. CheckpointError: no
                usable checkpoint, or another network. ValueError: ``text`` with an ONNX ``model_file``.
        """
        index = LiveIndex.open(index_path)  # with the images added and removed since it was built
        if text:
            if model_file:
                raise ValueError(IMAGE_BRANCH_ONLY)
            index.text_dim  # noqa: B018 - an index that cannot answer text queries is refused before the model loads
        model: FeatureModel
        # The threshold stored in the index, else beside the checkpoint; refused when made for other weights.
        calibration = calibration_for_index(index.meta, str(index_path), checkpoint)
        if model_file:  # an exported file, checked to be the index's network whichever runtime built it
            exported = load_exported_model(model_file, device=device)
            exported.check_same_features(index.meta, str(index_path))
            model = exported
            carried = getattr(exported, "calibration", None)  # the threshold the export carries
            if calibration is None and carried is not None:
                carried.check_weights(index.meta.get("weights_sha256"), str(index_path))
                calibration = carried
        else:
            model = load_index_model(index.meta, index_path, checkpoint, device, compiled=compiled and not text)
        return cls(
            index,
            model,
            index_path=index_path,
            relative_paths=relative_paths,
            legacy_keys=legacy_keys,
            calibration=calibration,
        )

    @property
    def decision(self) -> dict[str, Any]:
        """What the answers to photos say of their scores (:func:`svllreid.inference.calibration.decision`)."""
        return decision(self.calibration)

    # ------------------------------------------------------------------------------------------------
    # Image files (svllreid search)
    # ------------------------------------------------------------------------------------------------

    def search_files(
        self,
        paths: Sequence[str],
        topk: int,
        *,
        batch_size: int = 64,
        num_workers: int = 0,
        progress: bool = False,
    ) -> FileSearch:
        """Rank the gallery for each image file; unreadable files are left out and listed in the result's
        ``features.unreadable`` (the caller decides whether that stops the work). A query that is one of
        the index's images gets its labels, and its hits ``match``."""
        features = extract_model_features(
            self.model, paths, batch_size=batch_size, num_workers=num_workers, flip=self.flip, progress=progress
        )
        if not features.paths:
            return FileSearch([], features)
        result = self.index.search(features.feats.numpy(), topk)
        answers = []
        for i, path in enumerate(features.paths):
            row = self._rows.get(str(Path(path).absolute()))
            about = {"query": path, "kind": "image", **(self._row_labels(row) if row is not None else {})}
            answers.append(self._ranked(about, result, i, topk=topk))
        return FileSearch(answers, features)

    def search_texts(self, texts: Sequence[str], topk: int) -> tuple[list[Answer], list[str]]:
        """Rank the gallery's f_proj for each description; also the descriptions cut at the tokenizer's
        77 positions.

        Raises:
            IndexFileError / ValueError: an index or model that cannot answer text queries (see
                :attr:`text_error`), or an empty description.
        """
        encoder = self._text_encoder()
        encoded = encoder.encode(texts)
        result = self.index.search_text(encoded.feats.numpy(), topk)
        answers = [self._ranked({"query": text, "kind": "text"}, result, i, topk=topk) for i, text in enumerate(texts)]
        return answers, encoded.truncated

    def add_files(
        self,
        paths: Sequence[str],
        *,
        labels: Mapping[str, Sequence[str | None]] | None = None,
        skip_unreadable: bool = False,
        batch_size: int = 64,
        num_workers: int = 0,
        progress: bool = False,
    ) -> tuple[list[int], FileFeatures]:
        """Encode image files as the index's were (its network, its flip setting) and add them to the live
        gallery (:meth:`svllreid.search.live.LiveIndex.add`); ``labels`` give kind -> one name (or None) per
        file of ``paths``. Returns the new rows, in the order of the features' readable paths, and the features.

        Raises:
            ValueError: unreadable files without ``skip_unreadable`` (nothing is added), or none readable.
        """
        features = extract_model_features(
            self.model, paths, batch_size=batch_size, num_workers=num_workers, flip=self.flip, progress=progress
        )
        features.check_readable(skip_unreadable=skip_unreadable)
        position = {path: i for i, path in enumerate(paths)}
        read = [position[path] for path in features.paths]
        kept = {kind: [names[i] for i in read] for kind, names in (labels or {}).items()}
        return self.index.add(features.paths, features.feats.numpy(), kept), features

    def _text_encoder(self) -> DescriptionEncoder:
        if self._descriptions is None:
            raise ValueError(self.text_error)
        return self._descriptions

    # ------------------------------------------------------------------------------------------------
    # Queries of every kind, batched (svllreid serve)
    # ------------------------------------------------------------------------------------------------

    def image_query(self, pixels: torch.Tensor, topk: int, *, about: dict[str, Any] | None = None) -> Query:
        """A query by a decoded image (``[3, H, W]`` in [0, 1], at :attr:`model`'s input size)."""
        return Query("image", topk, pixels=self.model.transform(pixels), about=dict(about or {}))

    def text_query(self, text: str, topk: int) -> Query:
        """A query by description.

        Raises:
            UploadError: an index or model that cannot answer text queries (409), or an empty text.
        """
        if self.text_error is not None:
            raise UploadError(self.text_error, status=409)
        if not text.strip():
            raise UploadError("the description is empty; describe the person in a few words")
        return Query("text", topk, text=text, about={"text": text})

    def gallery_query(self, row: int, topk: int) -> Query:
        """A query by the gallery's image ``row`` (its stored feature); it is left out of its own results.

        Raises:
            UploadError: no such row (404).
        """
        self.check_row(row)
        about = {"row": row, "path": self.shown_path(row), **self._row_labels(row)}
        if self.legacy_keys:
            about.update(index=row, name=self.display_name(row))
        return Query("gallery", topk, row=row, about=about)

    @torch.no_grad()
    def answer(self, queries: Sequence[Query]) -> list[Answer]:
        """The ranked gallery of each query, in order: one image-encoder call for all image queries and
        one text-encoder call for all descriptions (on an approximate index, one per ``topk``)."""
        answers: list[Answer | None] = [None] * len(queries)
        # Read before searching: should a compaction renumber the rows meanwhile, a removal that quotes it is
        # refused (stale), where one read after could quote new numbers for old rows.
        generation = self.index.generation
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
            k = min(max(q.topk for q in chosen) + (kind == "gallery"), max(1, self.index.size))
            cut: set[str | None] = set()
            if kind == "image":
                images = torch.stack([q.pixels for q in chosen if q.pixels is not None]).to(self.model.device)
                unknown = torch.full((len(images),), -1, dtype=torch.long, device=images.device)
                encode = cast(Encoder, self.model.model.encode_image)
                feats = encode_batch(encode, images, unknown, unknown, amp_dtype=self.amp_dtype, flip=self.flip)
                result = self.index.search(feats.cpu().numpy(), k)
            elif kind == "text":
                encoded = self._text_encoder().encode([q.text or "" for q in chosen])
                result = self.index.search_text(encoded.feats.numpy(), k)
                cut = set(encoded.truncated)
            else:
                result = self.index.search(self.index.row_features([q.row for q in chosen if q.row is not None]), k)
            for j, (i, q) in enumerate(zip(rows, chosen, strict=True)):
                about = {"kind": q.kind, **q.about, **({"truncated": q.text in cut} if kind == "text" else {})}
                answer = self._ranked(about, result, j, topk=q.topk, skip_row=q.row)
                answer.generation = generation
                answers[i] = answer
        return [a for a in answers if a is not None]

    # ------------------------------------------------------------------------------------------------
    # Hits
    # ------------------------------------------------------------------------------------------------

    def _ranked(
        self, about: dict[str, Any], result: SearchResult, i: int, *, topk: int, skip_row: int | None = None
    ) -> Answer:
        """Answer ``i`` of ``result``: at most ``topk`` hits, without the query's own row (a gallery query)."""
        known = about.get("identity")
        photo = about.get("kind") != "text"
        hits: list[dict[str, Any]] = []
        for score, row in zip(result.scores[i], result.indices[i], strict=True):
            if row < 0 or row == skip_row:
                continue
            hits.append(self.hit(len(hits) + 1, float(score), int(row), known, decide=photo))
            if len(hits) == topk:
                break
        return Answer(about, hits, self.decision if photo else dict(TEXT_DECISION))

    def hit(
        self, rank: int, score: float, row: int, query_identity: str | None = None, *, decide: bool = True
    ) -> dict[str, Any]:
        """One result in the schema of :data:`HIT_KEYS` (``decide``: with ``same_identity`` when calibrated)."""
        hit: dict[str, Any] = {"rank": rank, "score": score, "row": row, "path": self.shown_path(row)}
        hit.update(self._row_labels(row))
        if query_identity is not None and "identity" in hit:
            hit["match"] = hit["identity"] == query_identity
        if decide and self.calibration is not None:
            hit["same_identity"] = self.calibration.same_identity(score)
        if self.legacy_keys:
            hit.update(index=row, name=self.display_name(row))
        return hit

    def check_row(self, row: int) -> int:
        """``row`` if it is one of the index's images.

        Raises:
            UploadError: 404, with the valid range.
        """
        if isinstance(row, bool) or not isinstance(row, int) or not self.index.is_live(row):
            gone = isinstance(row, int) and 0 <= row < len(self.index)
            raise UploadError(
                f"no gallery image {row!r}: "
                + ("it was removed from the gallery" if gone else f"the index holds images 0 to {len(self.index) - 1}"),
                status=404,
            )
        return row

    def shown_path(self, row: int) -> str:
        """A hit's ``path``: relative to the indexed folder with :attr:`relative_paths`, else as stored."""
        return self.display_name(row) if self.relative_paths else self.index.paths[row]

    def display_name(self, row: int) -> str:
        """Gallery image ``row``'s path under the folder the index was built from (else its file name)."""
        path = Path(self.index.paths[row])
        if self._root is not None and path.is_relative_to(self._root):
            return path.relative_to(self._root).as_posix()
        return path.name

    def _row_labels(self, row: int) -> dict[str, str]:
        return self.index.row_labels(row)
