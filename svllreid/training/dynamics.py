"""Stage 2's training dynamics, measured once per epoch: how the vision self-supervision's gradient on
the image encoder lines up with the main losses' gradient, and how the features of a fixed probe set of
training images spread within and between identities.

The gradients come from one training batch per epoch (the first), taken apart with
:func:`torch.autograd.grad` before the step's own backward pass: the step itself is unchanged, and the
extra cost is two backward passes per epoch (``stage2.probe_gradients``; each record says what they
took, ``grad_probe_s``, against the epoch's ``epoch_s``: 3.4 % on the tiny synthetic recipe). The spread
needs one forward pass over the probe set per epoch (``stage2.probe_spread``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from svllreid.data.types import Sample

__all__ = ["SSL_TERM", "gradient_alignment", "identity_spread", "probe_samples"]

#: The vision self-supervision's term; every other term of stage 2 is the main objective.
SSL_TERM = "vis_ssl"


def probe_samples(train: Sequence[Sample], ids: int = 16, per_id: int = 4) -> list[Sample]:
    """A fixed probe set: the first ``per_id`` images (by path) of the first ``ids`` identities with at
    least two images. The same for every epoch and every seed."""
    by_pid: dict[int, list[Sample]] = defaultdict(list)
    for sample in train:
        by_pid[sample.pid].append(sample)
    chosen = [pid for pid in sorted(by_pid) if len(by_pid[pid]) >= 2][:ids]
    return [s for pid in chosen for s in sorted(by_pid[pid], key=lambda s: s.path)[:per_id]]


def identity_spread(features: torch.Tensor, pids: torch.Tensor) -> dict[str, float]:
    """Within- and between-identity spread of L2-normalised ``features``, as cosine distances.

    ``within``: the mean distance of an image to its identity's mean direction; ``between``: the mean
    distance between the identities' mean directions; ``ratio``: within / between (lower separates
    identities better).
    """
    feats = F.normalize(features.float(), dim=-1)
    ids = sorted(set(pids.tolist()))
    centres = F.normalize(torch.stack([feats[pids == pid].mean(0) for pid in ids]), dim=-1)
    index = torch.tensor([ids.index(int(p)) for p in pids.tolist()])
    within = float((1 - (feats * centres[index]).sum(-1)).mean())
    if len(ids) > 1:
        cosines = centres @ centres.T
        off = ~torch.eye(len(ids), dtype=torch.bool)
        between = float((1 - cosines[off]).mean())
    else:
        between = float("nan")
    return {"within": within, "between": between, "ratio": within / between if between > 0 else float("nan")}


def gradient_alignment(terms: Mapping[str, torch.Tensor], params: Sequence[torch.Tensor]) -> dict[str, float] | None:
    """The cosine between the gradient of the vision self-supervision term and that of all the other terms
    on ``params``, and the ratio of their norms (SSL / main, as weighted in the loss); None without the
    term. Leaves the graph for the step's own backward pass and no ``.grad`` behind."""
    if SSL_TERM not in terms:
        return None
    main = torch.stack([value for name, value in terms.items() if name != SSL_TERM]).sum()
    params = [p for p in params if p.requires_grad]
    ssl_grads = torch.autograd.grad(terms[SSL_TERM], params, retain_graph=True, allow_unused=True)
    main_grads = torch.autograd.grad(main, params, retain_graph=True, allow_unused=True)
    pairs = [(s, m) for s, m in zip(ssl_grads, main_grads, strict=True) if s is not None and m is not None]
    if not pairs:
        return None
    ssl = torch.cat([s.float().flatten() for s, _ in pairs])
    base = torch.cat([m.float().flatten() for _, m in pairs])
    norm_ssl, norm_main = float(ssl.norm()), float(base.norm())
    cosine = float(F.cosine_similarity(ssl, base, dim=0)) if norm_ssl > 0 and norm_main > 0 else float("nan")
    return {"grad_cosine": cosine, "grad_norm_ratio": norm_ssl / norm_main if norm_main > 0 else float("nan")}
