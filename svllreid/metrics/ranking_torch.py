"""One chunk of queries ranked with torch, without a loop over queries (CUDA; on CPU only when asked, as
the tests do); the algorithm is in :mod:`svllreid.metrics.ranking`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["INT64_MAX", "distances", "float_keys", "max_rows", "no_tf32", "rank"]

INT64_MAX = torch.iinfo(torch.int64).max


def float_keys(v: torch.Tensor) -> torch.Tensor:
    """int64 in [0, 2^32) ordered like the float32 values ``v`` (equal floats, equal keys)."""
    v = torch.where(v == 0, 0.0, v)  # -0.0 and +0.0 have different bits but are equal
    bits = v.view(torch.int32).to(torch.int64)
    # Non-negative floats order like their bits; negative ones in reverse, below all of those.
    return torch.where(bits >= 0, bits + 2**31, ~bits)


def distances(
    q_aug: torch.Tensor,
    g_aug: torch.Tensor,
    dist: torch.Tensor,
    *,
    expand: torch.Tensor | None,
    dist_distinct: torch.Tensor | None,
) -> torch.Tensor:
    """:func:`svllreid.metrics.ranking_numpy.distances` in torch."""
    if expand is None:
        return torch.mm(q_aug, g_aug.T, out=dist)
    return torch.index_select(torch.mm(q_aug, g_aug.T, out=dist_distinct), 1, expand, out=dist)


def rank(
    dist: torch.Tensor, index: torch.Tensor, kind: torch.Tensor, num_matches: torch.Tensor, *, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`svllreid.metrics.ranking_numpy.rank` in torch, without a loop over queries; ``mask`` is a bool
    ``[c, G]`` buffer."""
    c, width = index.shape
    ng = dist.shape[1]
    cand_d = dist.gather(1, index)
    valid = kind > 0
    hardest = torch.where(kind == 1, cand_d, -torch.inf).amax(1)
    torch.le(dist, hardest[:, None], out=mask)
    flat = mask.view(-1).nonzero().squeeze(1)  # row-major
    vals = dist.view(-1)[flat]
    rows = flat // ng
    cols = flat - rows * ng
    gbits = max(1, (ng - 1).bit_length())
    if dist.dtype == torch.float32:
        item_v, cand_v, vbits = float_keys(vals), float_keys(cand_d), 32
    else:
        # float64 bits leave no room for the row and the index: use ranks among the chunk's values.
        uniq, inverse = torch.unique(torch.cat([vals, cand_d[valid]]), return_inverse=True)
        item_v = inverse[: len(vals)]
        cand_v = torch.zeros_like(index)
        cand_v[valid] = inverse[len(vals) :]
        vbits = max(1, (len(uniq) - 1).bit_length())
    if (c - 1).bit_length() + vbits + gbits > 63:  # prevented by max_rows
        raise AssertionError("chunk too large for int64 ranking keys")
    # One int64 key per (row, distance, gallery index): the ranking order, ties by gallery index.
    row_shift = vbits + gbits
    item_key = (rows << row_shift) | (item_v << gbits) | cols
    row_ids = torch.arange(c, device=index.device)[:, None]
    cand_key = torch.where(valid, (row_ids << row_shift) | (cand_v << gbits) | index, INT64_MAX)
    cand_key, order = cand_key.sort(1)  # pads last
    kind = kind.gather(1, order)
    is_match, is_removed = kind == 1, (kind == 2).to(torch.int64)
    match_key = cand_key[is_match]  # sorted: by row, then distance, then gallery index
    # before[j]: selected items with a smaller key than true match j. All the items of earlier rows
    # have smaller keys: their count is subtracted, and so are the removed candidates before j.
    slot = torch.searchsorted(match_key, item_key, right=True)
    before = torch.bincount(slot, minlength=len(match_key) + 1).cumsum(0)[:-1]
    per_row = torch.bincount(rows, minlength=c)
    match_row = row_ids.expand(c, width)[is_match]
    removed_before = (is_removed.cumsum(1) - is_removed)[is_match]
    rank = before - (per_row.cumsum(0) - per_row)[match_row] - removed_before
    nth = is_match.cumsum(1)[is_match]  # 1-based, in rank order
    prec = nth.to(torch.float64) / (rank + 1).to(torch.float64)
    ap = torch.zeros(c, dtype=torch.float64, device=dist.device).index_add_(0, match_row, prec) / num_matches
    last = rank[nth == num_matches.to(torch.int64)[match_row]]
    return ap, num_matches / (last + 1).to(torch.float64), rank[nth == 1]


@contextlib.contextmanager
def no_tf32() -> Iterator[None]:
    """float32 GEMMs in full precision on CUDA (TF32 would round the distances to 10 bits)."""
    allowed = torch.backends.cuda.matmul.allow_tf32
    if allowed:
        torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        if allowed:
            torch.backends.cuda.matmul.allow_tf32 = True


def max_rows(num_gallery: int) -> int:
    """Rows per torch chunk that keep ``(row, distance key, gallery index)`` within 63 bits.

    float32 keys take 32 bits; float64 ones at most ``bits(rows) + bits(G) + 1`` (ranks among at most
    ``rows * 2G`` values), so both fit when ``bits(rows) <= 31 - bits(G)``.
    """
    gbits = max(1, (num_gallery - 1).bit_length())
    if gbits > 31:
        raise ValueError(f"galleries of more than 2^31 images are not supported (got {num_gallery})")
    return 1 << (31 - gbits)
