"""A dense reference of k-reciprocal re-ranking (Zhong et al., CVPR 2017), used by the tests only.

It follows the widely used numpy code of the authors step by step (distances over all ``N = Q + G``
images, a dense ``N x N`` matrix ``V``, the Jaccard distance through an inverted index), with three
deliberate differences that make it a sharp reference for :mod:`svllreid.metrics.rerank`:

- everything is float64 (the original stores ``V`` and the Jaccard distance in float16, an error of
  about 1e-3), and the squared distances are summed from the feature differences, so that they are
  symmetric, zero on the diagonal, and equal for duplicate images;
- ``argsort`` is stable, so that equal distances are ordered by index;
- a row whose maximum distance is 0 (all images identical) is divided by 1 instead of 0.

Memory and time are ``O(N^2)``: small problems only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["k_reciprocal_rerank_reference"]


def _as_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def k_reciprocal_rerank_reference(
    query_feats: Any, gallery_feats: Any, *, k1: int = 20, k2: int = 6, lambda_value: float = 0.3
) -> np.ndarray:
    """Re-ranked distances ``[Q, G]`` (float64), from the arguments of
    :func:`svllreid.metrics.rerank.k_reciprocal_rerank`."""
    query = _as_numpy(query_feats)
    feats = np.concatenate([query, _as_numpy(gallery_feats)])
    query_num, all_num = len(query), len(feats)
    dist = np.stack([((feats - f) ** 2).sum(axis=1) for f in feats])
    col_max = np.max(dist, axis=0)
    original_dist = np.transpose(dist / np.where(col_max > 0, col_max, 1.0))
    initial_rank = np.argsort(original_dist, axis=1, kind="stable")
    half = int(np.around(k1 / 2))

    v = np.zeros((all_num, all_num))
    for i in range(all_num):
        # k-reciprocal neighbours: j in the top k1+1 of i, and i in the top k1+1 of j.
        forward_k_neigh_index = initial_rank[i, : k1 + 1]
        backward_k_neigh_index = initial_rank[forward_k_neigh_index, : k1 + 1]
        fi = np.where(backward_k_neigh_index == i)[0]
        k_reciprocal_index = forward_k_neigh_index[fi]
        k_reciprocal_expansion_index = k_reciprocal_index
        for candidate in k_reciprocal_index:
            candidate_forward_k_neigh_index = initial_rank[candidate, : half + 1]
            candidate_backward_k_neigh_index = initial_rank[candidate_forward_k_neigh_index, : half + 1]
            fi_candidate = np.where(candidate_backward_k_neigh_index == candidate)[0]
            candidate_k_reciprocal_index = candidate_forward_k_neigh_index[fi_candidate]
            if len(np.intersect1d(candidate_k_reciprocal_index, k_reciprocal_index)) > 2 / 3 * len(
                candidate_k_reciprocal_index
            ):
                k_reciprocal_expansion_index = np.append(k_reciprocal_expansion_index, candidate_k_reciprocal_index)
        k_reciprocal_expansion_index = np.unique(k_reciprocal_expansion_index)
        weight = np.exp(-original_dist[i, k_reciprocal_expansion_index])
        v[i, k_reciprocal_expansion_index] = weight / np.sum(weight)
    original_dist = original_dist[:query_num]

    if k2 != 1:  # local query expansion: the mean of the rows of the k2 nearest neighbours
        v_qe = np.zeros_like(v)
        for i in range(all_num):
            v_qe[i, :] = np.mean(v[initial_rank[i, :k2], :], axis=0)
        v = v_qe

    inv_index = [np.where(v[:, i] != 0)[0] for i in range(all_num)]
    jaccard_dist = np.zeros_like(original_dist)
    for i in range(query_num):
        temp_min = np.zeros(all_num)
        ind_non_zero = np.where(v[i, :] != 0)[0]
        ind_images = [inv_index[ind] for ind in ind_non_zero]
        for j in range(len(ind_non_zero)):
            temp_min[ind_images[j]] += np.minimum(v[i, ind_non_zero[j]], v[ind_images[j], ind_non_zero[j]])
        jaccard_dist[i] = 1 - temp_min / (2 - temp_min)

    final_dist = jaccard_dist * (1 - lambda_value) + original_dist * lambda_value
    return final_dist[:query_num, query_num:]
