"""Random Cut Forest (Guha, Mishra, Roy and Schrijvers, ICML 2016), the algorithm behind SageMaker's
`randomcutforest`: a forest of random cut trees stored as flat arrays, two anomaly scores, streaming
insert/delete with a reservoir per tree, shingling, thresholds and per-dimension attribution.

Taught in notebooks/01_random_cut_forest.ipynb.

Layout. A forest of `T` trees with reservoirs of `m` points keeps every node of every tree in arrays
of shape `(T, 2m + 2)` (`cut_dim`, `cut_value`, `left`, `right`, `parent`, `mass`) and `(T, 2m + 2, d)`
(`lo`, `hi`: the node's bounding box; a leaf's box is its point). `cut_dim` is `-1` for a leaf and
`-2` for a free slot. Batch training builds all trees at once, level by level, with vectorized
numpy (one small compiled reduction gives the boxes of all segments of a level; numpy's reduceat is slow
on many small segments). Scoring and streaming updates walk one root-to-leaf path per (point, tree),
a loop by nature, so they are compiled with numba (parallel over points or over trees): on a CPU the
vectorized torch scorer measured about 30x slower per (point, tree) pair than the compiled loop. That
torch scorer gives the same numbers on any torch device (the GPU path).

Randomness. Every random number is a counter-based hash of (seed, tree, what it is for): a node's
cut during batch building is keyed by the node's path from the root, a reservoir weight by the
point's arrival index, a cut during streaming insertion by (arrival index, depth). So each tree has
its own random stream, results do not depend on threads or on the number of trees, and the plain
recursive builder in the notebook (`root_key`, `child_key`, `key_to_uniform`) grows the very same
tree as the vectorized builder.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numba import njit, prange

__all__ = [
    "RandomCutForest",
    "score",
    "shingle",
    "sigma_threshold",
    "running_threshold",
    "window_detection",
    "root_key",
    "child_key",
    "key_to_uniform",
    "random_cut",
]

# ----------------------------------------------------------------------------------------------
# Counter-based random numbers (splitmix64's finaliser as the mixing function)
# ----------------------------------------------------------------------------------------------
_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_MUL1 = 0xBF58476D1CE4E5B9
_MUL2 = 0x94D049BB133111EB
_SALT_SEED, _SALT_BUILD, _SALT_SAMPLE, _SALT_INSERT = 0x5EED, 1, 2, 3

_G64 = np.uint64(_GOLDEN)
_M1 = np.uint64(_MUL1)
_M2 = np.uint64(_MUL2)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_TWO_M53 = 1.0 / 9007199254740992.0  # 2**-53


def _mix_int(z: int) -> int:
    z &= _MASK64
    z = ((z ^ (z >> 30)) * _MUL1) & _MASK64
    z = ((z ^ (z >> 27)) * _MUL2) & _MASK64
    return z ^ (z >> 31)


def _combine_int(h: int, x: int) -> int:
    return _mix_int((h + _mix_int(x + _GOLDEN)) & _MASK64)


def _tree_key_int(seed: int, tree: int) -> int:
    return _combine_int(_combine_int(_SALT_SEED, seed), tree)


def root_key(seed: int, tree: int) -> int:
    """The random key of tree `tree`'s root when a forest with `seed` is built in batch."""
    _check_count("seed", seed, 0)
    _check_count("tree", tree, 0)
    return _combine_int(_tree_key_int(int(seed), int(tree)), _SALT_BUILD)


def child_key(key: int, side: int) -> int:
    """The key of a node's left (`side=0`) or right (`side=1`) child."""
    if side not in (0, 1):
        raise ValueError(f"side: expected 0 (left) or 1 (right), got {side!r}")
    return _combine_int(int(key), side)


def key_to_uniform(key: int) -> float:
    """The uniform number in (0, 1) that a node with this key uses to place its cut."""
    return ((_mix_int(int(key)) >> 11) + 0.5) * _TWO_M53


def _mix_np(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


def _combine_np(h: np.ndarray, x: np.ndarray) -> np.ndarray:
    return _mix_np(h + _mix_np(x + _G64))


def _unit_np(key: np.ndarray) -> np.ndarray:
    return ((_mix_np(key) >> _S11).astype(np.float64) + 0.5) * _TWO_M53


@njit(cache=True)
def _mix_nb(z):
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(cache=True)
def _combine_nb(h, x):
    return _mix_nb(h + _mix_nb(x + _G64))


@njit(cache=True)
def _unit_nb(key):
    return (np.float64(_mix_nb(key) >> _S11) + 0.5) * _TWO_M53


def _tree_keys(seed: int, num_trees: int) -> np.ndarray:
    return np.array([_tree_key_int(seed, t) for t in range(num_trees)], dtype=np.uint64)


def _sample_weights(tree_keys: np.ndarray, start: int, stop: int, time_decay: float) -> np.ndarray:
    """Reservoir weights (T, stop - start) of arrivals start..stop-1; a reservoir keeps the smallest.

    `log(-log U)` ranks points uniformly at random; `-time_decay * arrival` favours recent points
    (the compact sampler of AWS's open-source RCF); with `time_decay = 0` it is uniform sampling.
    """
    with np.errstate(over="ignore"):
        keys = _combine_np(tree_keys, np.full_like(tree_keys, _SALT_SAMPLE))
        arrivals = np.arange(start, stop, dtype=np.uint64)
        u = _unit_np(_combine_np(keys[:, None], arrivals[None, :]))
    return np.log(-np.log(u)) - time_decay * np.arange(start, stop, dtype=np.float64)[None, :]


# ----------------------------------------------------------------------------------------------
# Input validation
# ----------------------------------------------------------------------------------------------
def _check_count(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an integer, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value}")
    return int(value)


def _check_matrix(name: str, X: Any, columns: int | None = None) -> np.ndarray:
    """X as a C-contiguous float64 (n, d) array with n >= 1, d >= 1, every value finite."""
    if hasattr(X, "detach"):
        X = X.detach().cpu().numpy()
    try:
        arr = np.asarray(X)
    except Exception as err:  # ragged lists and the like
        raise TypeError(f"{name}: expected a 2-D numeric array, could not convert ({err})") from err
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name}: expected a 2-D numeric array, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"{name}: expected real numbers, got dtype {arr.dtype}")
    if arr.ndim != 2:
        hint = " (for one feature use X.reshape(-1, 1); for a time series use shingle(series, shingle_size))" if arr.ndim == 1 else ""
        raise ValueError(f"{name}: expected a 2-D array (records, features), got shape {arr.shape}{hint}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name}: expected at least one record, got shape {arr.shape}")
    if arr.shape[1] == 0:
        raise ValueError(f"{name}: expected at least one feature, got shape {arr.shape}")
    if columns is not None and arr.shape[1] != columns:
        raise ValueError(f"{name}: expected {columns} features per record (as the forest was trained), got {arr.shape[1]}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{name}: expected finite values, found {arr[tuple(bad)]} at row {bad[0]}, column {bad[1]}")
    return arr


def _check_vector(name: str, values: Any) -> np.ndarray:
    arr = np.asarray(values.detach().cpu().numpy() if hasattr(values, "detach") else values)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"{name}: expected a 1-D array of real numbers, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name}: expected at least one value")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: expected finite values, found {arr[~np.isfinite(arr)][0]} at index {int(np.argmax(~np.isfinite(arr)))}")
    return arr


# ----------------------------------------------------------------------------------------------
# The random cut
# ----------------------------------------------------------------------------------------------
def random_cut(lo: np.ndarray, hi: np.ndarray, u: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Random cuts of boxes: dimension with probability proportional to its range, value uniform in it.

    lo, hi: (S, d) or (d,) boxes with at least one positive range; u: (S,) or scalar in (0, 1).
    Returns (dim (S,), value (S,)). One uniform places the cut: `u * sum(ranges)` is a point on the
    ranges laid end to end; the range it falls in is the dimension, the offset in it the value. A
    record goes left when `x[dim] <= value`; the value is kept below the box's top so both sides get
    points.
    """
    lo2, hi2 = np.atleast_2d(np.asarray(lo, dtype=np.float64)), np.atleast_2d(np.asarray(hi, dtype=np.float64))
    if lo2.shape != hi2.shape:
        raise ValueError(f"lo, hi: expected the same shape, got {lo2.shape} and {hi2.shape}")
    span = hi2 - lo2
    if (span < 0).any():
        raise ValueError("lo, hi: expected lo <= hi in every dimension")
    cum = np.cumsum(span, axis=1)
    total = cum[:, -1]
    if (total <= 0).any():
        raise ValueError("lo, hi: a box with zero range in every dimension cannot be cut")
    target = np.broadcast_to(np.asarray(u, dtype=np.float64), total.shape) * total
    dim = (cum <= target[:, None]).sum(axis=1)
    last_positive = span.shape[1] - 1 - np.argmax(span[:, ::-1] > 0, axis=1)
    dim = np.minimum(dim, last_positive)
    # `before` must equal the running sum up to dim exactly (the plain builder adds term by term)
    exclusive = np.concatenate([np.zeros((cum.shape[0], 1)), cum[:, :-1]], axis=1)
    before = np.take_along_axis(exclusive, dim[:, None], axis=1)[:, 0]
    lo_d = np.take_along_axis(lo2, dim[:, None], axis=1)[:, 0]
    hi_d = np.take_along_axis(hi2, dim[:, None], axis=1)[:, 0]
    value = np.minimum(np.maximum(lo_d + (target - before), lo_d), np.nextafter(hi_d, -np.inf))
    if np.ndim(lo) == 1:
        return dim[0], value[0]
    return dim, value


@njit(cache=True)
def _random_cut_nb(lo, hi, x, u):
    """The cut of box(lo, hi) extended by x, as `random_cut` would place it (numba, scalar)."""
    d = x.shape[0]
    total = 0.0
    for j in range(d):
        total += max(hi[j], x[j]) - min(lo[j], x[j])
    target = u * total
    acc = 0.0
    dim = -1
    last_positive = 0
    for j in range(d):
        s = max(hi[j], x[j]) - min(lo[j], x[j])
        if s > 0.0:
            last_positive = j
        acc_next = acc + s
        if acc_next > target:
            dim = j
            break
        acc = acc_next
    if dim < 0:
        dim = last_positive
        acc = 0.0
        for j in range(dim):
            acc += max(hi[j], x[j]) - min(lo[j], x[j])
    lo_d = min(lo[dim], x[dim])
    hi_d = max(hi[dim], x[dim])
    value = lo_d + (target - acc)
    if value < lo_d:
        value = lo_d
    top = np.nextafter(hi_d, -np.inf)
    if value > top:
        value = top
    return dim, value


# ----------------------------------------------------------------------------------------------
# Compiled kernels: scoring, attribution, insertion, deletion, streaming
# ----------------------------------------------------------------------------------------------
# Reassociation lets LLVM vectorise the per-dimension sums (4x faster scoring); sums of
# non-negative terms stay exactly zero only when every term is, so the "x is this leaf" test is exact.
_FASTMATH = {"reassoc", "contract", "nsz"}


@njit(cache=True, fastmath=_FASTMATH)
def _score_tree(x, t, root, cut_dim, cut_value, left, right, mass, lo, hi):
    """(depth score, CoDisp) of x in tree t; (0, 0) for an empty tree.

    Walks x's path from the root. At each node the probability that inserting x would cut it off
    there is (how far x sticks out of the box) / (range sum of the box grown to x). Both scores
    are expectations over that insertion; a point that is already a leaf is scored in place.
    """
    u = root[t]
    if u < 0:
        return 0.0, 0.0
    d = x.shape[0]
    tree_mass = mass[t, u]
    alive = 1.0  # probability that the insertion has not cut x off above this node
    depth_score = 0.0
    codisp = 0.0
    max_ratio_new = 0.0  # max over ancestors of sibling / (mass + 1): x inserted below them
    max_ratio_in = 0.0  # max over ancestors of sibling / mass: x already in the tree
    parent_mass = 0
    k = 0
    while True:
        n = mass[t, u]
        if k > 0:
            sibling = parent_mass - n
            max_ratio_new = max(max_ratio_new, sibling / (n + 1.0))
            max_ratio_in = max(max_ratio_in, sibling / n)
        box_lo = lo[t, u]
        box_hi = hi[t, u]
        ext = 0.0
        span = 0.0
        for j in range(d):
            span += box_hi[j] - box_lo[j]
            ext += max(box_lo[j] - x[j], 0.0) + max(x[j] - box_hi[j], 0.0)
        if cut_dim[t, u] < 0:
            if ext == 0.0:  # x is this leaf's point
                damp = 1.0 - n / (2.0 * tree_mass)
                depth_score += alive * damp / (k + math.log2(n + 1.0))
                codisp += alive * max_ratio_in
            else:
                depth_score += alive / (k + 1.0)
                codisp += alive * max(float(n), max_ratio_new)
            break
        if ext > 0.0:
            q = ext / (span + ext)
            depth_score += alive * q / (k + 1.0)
            codisp += alive * q * max(float(n), max_ratio_new)
            alive *= 1.0 - q
        if x[cut_dim[t, u]] <= cut_value[t, u]:
            u = left[t, u]
        else:
            u = right[t, u]
        parent_mass = n
        k += 1
    return depth_score * math.log2(tree_mass + 1.0), codisp


@njit(parallel=True, cache=True)
def _score_batch_nb(X, root, cut_dim, cut_value, left, right, mass, lo, hi, block, out_depth, out_codisp):
    """Blocks of points in parallel; inside a block, tree by tree, so a tree stays in cache."""
    n = X.shape[0]
    T = root.shape[0]
    used = 0
    for t in range(T):
        if root[t] >= 0:
            used += 1
    for b in prange((n + block - 1) // block):
        first = b * block
        last = min(n, first + block)
        for i in range(first, last):
            out_depth[i] = 0.0
            out_codisp[i] = 0.0
        for t in range(T):
            if root[t] < 0:
                continue
            for i in range(first, last):
                a, c = _score_tree(X[i], t, root, cut_dim, cut_value, left, right, mass, lo, hi)
                out_depth[i] += a
                out_codisp[i] += c
        if used > 0:
            for i in range(first, last):
                out_depth[i] /= used
                out_codisp[i] /= used


@njit(cache=True, fastmath=_FASTMATH)
def _attribute_tree(x, t, root, cut_dim, cut_value, left, right, mass, lo, hi, out):
    """Add tree t's depth score of x to out (d,), split by the dimension the cut would use."""
    u = root[t]
    if u < 0:
        return
    d = x.shape[0]
    tree_mass = mass[t, u]
    norm = math.log2(tree_mass + 1.0)
    alive = 1.0
    k = 0
    while True:
        n = mass[t, u]
        box_lo = lo[t, u]
        box_hi = hi[t, u]
        ext = 0.0
        span = 0.0
        for j in range(d):
            span += box_hi[j] - box_lo[j]
            ext += max(box_lo[j] - x[j], 0.0) + max(x[j] - box_hi[j], 0.0)
        if cut_dim[t, u] < 0:
            if ext == 0.0:  # a point already in the tree has no direction: share it evenly
                share = norm * alive * (1.0 - n / (2.0 * tree_mass)) / (k + math.log2(n + 1.0)) / d
                for j in range(d):
                    out[j] += share
            else:
                w = norm * alive / (k + 1.0) / ext
                for j in range(d):
                    out[j] += w * abs(x[j] - box_lo[j])
            break
        if ext > 0.0:
            w = norm * alive / (k + 1.0) / (span + ext)
            for j in range(d):
                out[j] += w * (max(box_lo[j] - x[j], 0.0) + max(x[j] - box_hi[j], 0.0))
            alive *= 1.0 - ext / (span + ext)
        if x[cut_dim[t, u]] <= cut_value[t, u]:
            u = left[t, u]
        else:
            u = right[t, u]
        k += 1


@njit(parallel=True, cache=True)
def _attribution_batch_nb(X, root, cut_dim, cut_value, left, right, mass, lo, hi, out):
    n = X.shape[0]
    T = root.shape[0]
    used = 0
    for t in range(T):
        if root[t] >= 0:
            used += 1
    for i in prange(n):
        for t in range(T):
            _attribute_tree(X[i], t, root, cut_dim, cut_value, left, right, mass, lo, hi, out[i])
        if used > 0:
            for j in range(X.shape[1]):
                out[i, j] /= used


@njit(cache=True)
def _pop_free(t, free, n_free):
    if n_free[t] == 0:
        raise RuntimeError("random cut tree is full: more records than num_samples_per_tree + 1")
    n_free[t] -= 1
    return free[t, n_free[t]]


@njit(cache=True)
def _push_free(t, node, free, n_free, cut_dim):
    cut_dim[t, node] = -2
    free[t, n_free[t]] = node
    n_free[t] += 1


@njit(cache=True)
def _insert_nb(x, t, key, root, cut_dim, cut_value, left, right, parent, mass, lo, hi, free, n_free):
    """Insert x into tree t (paper's InsertPoint); returns x's leaf. `key` keys this insertion's cuts."""
    d = x.shape[0]
    u = root[t]
    if u < 0:
        leaf = _pop_free(t, free, n_free)
        cut_dim[t, leaf] = -1
        left[t, leaf] = -1
        right[t, leaf] = -1
        parent[t, leaf] = -1
        mass[t, leaf] = 1
        for j in range(d):
            lo[t, leaf, j] = x[j]
            hi[t, leaf, j] = x[j]
        root[t] = leaf
        return leaf
    k = 0
    while True:
        outside = False
        for j in range(d):
            if x[j] < lo[t, u, j] or x[j] > hi[t, u, j]:
                outside = True
                break
        separated = False
        dim = -1
        value = 0.0
        if outside:
            dim, value = _random_cut_nb(lo[t, u], hi[t, u], x, _unit_nb(_combine_nb(key, np.uint64(k))))
            xd = x[dim]
            separated = (xd <= value and value < lo[t, u, dim]) or (hi[t, u, dim] <= value and value < xd)
        if separated:
            v = _pop_free(t, free, n_free)
            leaf = _pop_free(t, free, n_free)
            cut_dim[t, leaf] = -1
            left[t, leaf] = -1
            right[t, leaf] = -1
            mass[t, leaf] = 1
            for j in range(d):
                lo[t, leaf, j] = x[j]
                hi[t, leaf, j] = x[j]
                lo[t, v, j] = min(lo[t, u, j], x[j])
                hi[t, v, j] = max(hi[t, u, j], x[j])
            cut_dim[t, v] = dim
            cut_value[t, v] = value
            mass[t, v] = mass[t, u] + 1
            if x[dim] <= value:
                left[t, v] = leaf
                right[t, v] = u
            else:
                left[t, v] = u
                right[t, v] = leaf
            p = parent[t, u]
            parent[t, v] = p
            parent[t, u] = v
            parent[t, leaf] = v
            if p < 0:
                root[t] = v
            elif left[t, p] == u:
                left[t, p] = v
            else:
                right[t, p] = v
            return leaf
        mass[t, u] += 1
        if cut_dim[t, u] < 0:  # not cut off at a leaf: x is that leaf's point
            return u
        for j in range(d):
            if x[j] < lo[t, u, j]:
                lo[t, u, j] = x[j]
            elif x[j] > hi[t, u, j]:
                hi[t, u, j] = x[j]
        if x[cut_dim[t, u]] <= cut_value[t, u]:
            u = left[t, u]
        else:
            u = right[t, u]
        k += 1


@njit(cache=True)
def _delete_nb(t, leaf, root, cut_dim, left, right, parent, mass, lo, hi, free, n_free):
    """Remove one copy of leaf's point from tree t (paper's DeletePoint)."""
    d = lo.shape[2]
    if mass[t, leaf] > 1:
        u = leaf
        while u >= 0:
            mass[t, u] -= 1
            u = parent[t, u]
        return
    p = parent[t, leaf]
    _push_free(t, leaf, free, n_free, cut_dim)
    if p < 0:
        root[t] = -1
        return
    sibling = right[t, p] if left[t, p] == leaf else left[t, p]
    g = parent[t, p]
    parent[t, sibling] = g
    _push_free(t, p, free, n_free, cut_dim)
    if g < 0:
        root[t] = sibling
        return
    if left[t, g] == p:
        left[t, g] = sibling
    else:
        right[t, g] = sibling
    u = g
    shrink = True
    while u >= 0:
        mass[t, u] -= 1
        if shrink:
            a = left[t, u]
            b = right[t, u]
            changed = False
            for j in range(d):
                new_lo = min(lo[t, a, j], lo[t, b, j])
                new_hi = max(hi[t, a, j], hi[t, b, j])
                if new_lo != lo[t, u, j] or new_hi != hi[t, u, j]:
                    changed = True
                    lo[t, u, j] = new_lo
                    hi[t, u, j] = new_hi
            shrink = changed  # an unchanged box leaves every box above it unchanged too
        u = parent[t, u]


@njit(cache=True)
def _argmax_weight(weight, t, count):
    best = 0
    for j in range(1, count):
        if weight[t, j] > weight[t, best]:
            best = j
    return best


@njit(parallel=True, cache=True)
def _stream_nb(X, start, tree_keys, time_decay, root, cut_dim, cut_value, left, right, parent, mass, lo, hi,
               free, n_free, weight, slot_leaf, n_slots, max_slot, out_depth, out_codisp):
    """For each tree (in parallel) and each row of X in order: score it, then offer it to the reservoir."""
    T = root.shape[0]
    capacity = weight.shape[1]
    n = X.shape[0]
    for tree in prange(T):
        t = np.int64(tree)  # prange counts in uint64; one integer type means one compiled callee
        sample_key = _combine_nb(tree_keys[t], np.uint64(_SALT_SAMPLE))
        insert_key = _combine_nb(tree_keys[t], np.uint64(_SALT_INSERT))
        for i in range(n):
            x = X[i]
            arrival = start + i
            a, b = _score_tree(x, t, root, cut_dim, cut_value, left, right, mass, lo, hi)
            out_depth[t, i] = a
            out_codisp[t, i] = b
            u = _unit_nb(_combine_nb(sample_key, np.uint64(arrival)))
            w = math.log(-math.log(u)) - time_decay * arrival
            if n_slots[t] < capacity:
                slot = n_slots[t]
                n_slots[t] += 1
            else:
                j = max_slot[t]
                if not w < weight[t, j]:
                    continue
                _delete_nb(t, slot_leaf[t, j], root, cut_dim, left, right, parent, mass, lo, hi, free, n_free)
                slot = j
            weight[t, slot] = w
            key = _combine_nb(insert_key, np.uint64(arrival))
            slot_leaf[t, slot] = _insert_nb(x, t, key, root, cut_dim, cut_value, left, right, parent, mass, lo, hi, free, n_free)
            if n_slots[t] == capacity:
                max_slot[t] = _argmax_weight(weight, t, capacity)


# ----------------------------------------------------------------------------------------------
# The vectorized torch scorer (any torch device; the GPU path)
# ----------------------------------------------------------------------------------------------
def _score_torch(X: np.ndarray, forest: RandomCutForest, device: Any, pairs_per_step: int) -> tuple[np.ndarray, np.ndarray]:
    """Both scores of every row of X, all (point, tree) pairs advancing one level per step."""
    import torch

    dev = torch.device(device)
    cache = forest._torch_cache
    if cache is None or cache[0] != (dev, forest._version):
        names = ("root", "cut_dim", "cut_value", "left", "right", "mass", "lo", "hi")
        cache = ((dev, forest._version), {k: torch.as_tensor(getattr(forest, k)).to(dev) for k in names})
        forest._torch_cache = cache
    a = cache[1]
    T, cap, d = a["lo"].shape
    lo = a["lo"].reshape(T * cap, d)
    hi = a["hi"].reshape(T * cap, d)
    cut_dim, cut_value = a["cut_dim"].reshape(-1).long(), a["cut_value"].reshape(-1)
    left, right, mass = a["left"].reshape(-1).long(), a["right"].reshape(-1).long(), a["mass"].reshape(-1).double()
    live = torch.nonzero(a["root"] >= 0).flatten()
    if live.numel() == 0:
        return np.zeros(len(X)), np.zeros(len(X))
    roots = live * cap + a["root"][live].long()
    tree_mass = mass[roots]  # (live,)
    chunk = max(1, pairs_per_step // live.numel())
    depth_out, codisp_out = [], []
    for s in range(0, len(X), chunk):
        x = torch.as_tensor(X[s : s + chunk]).to(dev)  # (B, d)
        B = x.shape[0]
        point = torch.arange(B, device=dev).repeat_interleave(live.numel())  # (P,)
        tree = torch.arange(live.numel(), device=dev).repeat(B)
        node = roots[tree]
        P = point.numel()
        alive = torch.ones(P, dtype=torch.float64, device=dev)
        max_new = torch.zeros_like(alive)
        max_in = torch.zeros_like(alive)
        parent_mass = torch.zeros_like(alive)
        depth = torch.zeros_like(alive)
        acc_depth = torch.zeros(B, dtype=torch.float64, device=dev)
        acc_codisp = torch.zeros(B, dtype=torch.float64, device=dev)
        acc_d = torch.zeros_like(alive)
        acc_c = torch.zeros_like(alive)
        while P > 0:
            n = mass[node]
            xs = x[point]
            box_lo, box_hi = lo[node], hi[node]
            ext = ((box_lo - xs).clamp(min=0) + (xs - box_hi).clamp(min=0)).sum(1)
            span = (box_hi - box_lo).sum(1)
            sibling = parent_mass - n
            has_parent = depth > 0
            max_new = torch.where(has_parent, torch.maximum(max_new, sibling / (n + 1)), max_new)
            max_in = torch.where(has_parent, torch.maximum(max_in, sibling / n), max_in)
            is_leaf = cut_dim[node] < 0
            inside = ext == 0
            q = torch.where(inside, torch.zeros_like(ext), ext / (span + ext).clamp(min=1e-300))
            q = torch.where(is_leaf & ~inside, torch.ones_like(q), q)
            grown_max = torch.maximum(n, max_new)
            acc_d = acc_d + alive * q / (depth + 1)
            acc_c = acc_c + alive * q * grown_max
            seen = is_leaf & inside
            tm = tree_mass[tree]
            seen_depth = alive * (1 - n / (2 * tm)) / (depth + torch.log2(n + 1))
            acc_d = torch.where(seen, acc_d + seen_depth, acc_d)
            acc_c = torch.where(seen, acc_c + alive * max_in, acc_c)
            alive = alive * (1 - q)
            if bool(is_leaf.any()):
                done = is_leaf
                acc_depth.index_add_(0, point[done], acc_d[done] * torch.log2(tm[done] + 1))
                acc_codisp.index_add_(0, point[done], acc_c[done])
                keep = ~done
                point, tree, node = point[keep], tree[keep], node[keep]
                alive, max_new, max_in, depth = alive[keep], max_new[keep], max_in[keep], depth[keep]
                acc_d, acc_c, n, xs = acc_d[keep], acc_c[keep], n[keep], xs[keep]
                P = point.numel()
                if P == 0:
                    break
            go_left = xs.gather(1, cut_dim[node].unsqueeze(1)).squeeze(1) <= cut_value[node]
            tree_base = node - node % cap
            node = tree_base + torch.where(go_left, left[node], right[node])
            parent_mass = n
            depth = depth + 1
        depth_out.append((acc_depth / live.numel()).cpu().numpy())
        codisp_out.append((acc_codisp / live.numel()).cpu().numpy())
    return np.concatenate(depth_out), np.concatenate(codisp_out)


@njit(cache=True)
def _segment_box(X, rows, seg_len):
    """Bounding boxes (S, d) of consecutive segments of X[rows]: the one reduction of the level-by-level
    build that numpy does slowly (reduceat on many small segments)."""
    S = seg_len.shape[0]
    d = X.shape[1]
    lo = np.empty((S, d))
    hi = np.empty((S, d))
    pos = 0
    for s in range(S):
        first = X[rows[pos]]
        for j in range(d):
            lo[s, j] = first[j]
            hi[s, j] = first[j]
        for p in range(pos + 1, pos + seg_len[s]):
            x = X[rows[p]]
            for j in range(d):
                lo[s, j] = min(lo[s, j], x[j])
                hi[s, j] = max(hi[s, j], x[j])
        pos += seg_len[s]
    return lo, hi


# ----------------------------------------------------------------------------------------------
# The forest
# ----------------------------------------------------------------------------------------------
class RandomCutForest:
    """A random cut forest with SageMaker's hyperparameters and a scikit-learn-like surface.

    fit(X):      batch training, SageMaker style: each tree keeps a reservoir sample of
                 `num_samples_per_tree` records of X and is built from it (all trees at once, level by level).
    score(X):    every record of X against every tree, leaving the forest as it is:
                 kind="depth" (SageMaker's score, ~1 for ordinary points) or kind="codisp" (the paper's).
    update(X):   streaming: each record in order is scored first, then offered to every tree's
                 reservoir; an accepted record is inserted and the record it replaces deleted.
    attribution(X): (n, d) shares of the depth score per feature (rows sum to the score).

    time_decay:  0 keeps a uniform sample of everything seen; `time_decay > 0` favours recent
                 records (a record `1 / time_decay` arrivals old is `e` times less likely to stay).
    output_after: `update` returns 0 for the first `output_after` records (the trees are still filling);
                 defaults to a quarter of `num_samples_per_tree`.
    """

    def __init__(
        self,
        num_trees: int = 100,
        num_samples_per_tree: int = 256,
        *,
        time_decay: float = 0.0,
        output_after: int | None = None,
        seed: int = 0,
    ) -> None:
        self.num_trees = _check_count("num_trees", num_trees, 1)
        self.num_samples_per_tree = _check_count("num_samples_per_tree", num_samples_per_tree, 1)
        if isinstance(time_decay, bool) or not isinstance(time_decay, (int, float, np.floating)):
            raise TypeError(f"time_decay: expected a number >= 0, got {time_decay!r}")
        if not (math.isfinite(time_decay) and time_decay >= 0):
            raise ValueError(f"time_decay: expected a finite number >= 0, got {time_decay}")
        self.time_decay = float(time_decay)
        if output_after is None:
            output_after = max(1, self.num_samples_per_tree // 4)
        self.output_after = _check_count("output_after", output_after, 0)
        self.seed = _check_count("seed", seed, 0)
        if self.seed >= 2**64:
            raise ValueError(f"seed: expected an integer < 2**64, got {seed}")
        self.dimensions: int | None = None
        self.seen = 0
        self._tree_keys = _tree_keys(self.seed, self.num_trees)
        self._version = 0
        self._torch_cache: Any = None

    # -- state -------------------------------------------------------------------------------
    def _allocate(self, d: int) -> None:
        T, m = self.num_trees, self.num_samples_per_tree
        cap = 2 * m + 2  # m + 1 leaves: room to insert a record before deleting the one it replaces
        self.dimensions = d
        self.root = np.full(T, -1, dtype=np.int64)
        self.cut_dim = np.full((T, cap), -2, dtype=np.int64)
        self.cut_value = np.zeros((T, cap))
        self.left = np.full((T, cap), -1, dtype=np.int64)
        self.right = np.full((T, cap), -1, dtype=np.int64)
        self.parent = np.full((T, cap), -1, dtype=np.int64)
        self.mass = np.zeros((T, cap), dtype=np.int64)
        self.lo = np.zeros((T, cap, d))
        self.hi = np.zeros((T, cap, d))
        # free node ids as a stack; popping from the end hands out 0, 1, 2, ... first
        self.free = np.tile(np.arange(cap - 1, -1, -1, dtype=np.int64), (T, 1))
        self.n_free = np.full(T, cap, dtype=np.int64)
        self.weight = np.full((T, m), np.inf)
        self.slot_leaf = np.full((T, m), -1, dtype=np.int64)
        self.n_slots = np.zeros(T, dtype=np.int64)
        self.max_slot = np.zeros(T, dtype=np.int64)
        self.seen = 0

    def _require_fitted(self, name: str, X: Any) -> np.ndarray:
        if self.dimensions is None or not (self.root >= 0).any():
            raise ValueError("the forest is empty: call fit(X) or update(X) before scoring")
        return _check_matrix(name, X, self.dimensions)

    @property
    def tree_sizes(self) -> np.ndarray:
        """(T,) number of records each tree holds (duplicates counted)."""
        if self.dimensions is None:
            return np.zeros(self.num_trees, dtype=np.int64)
        return np.where(self.root >= 0, self.mass[np.arange(self.num_trees), np.maximum(self.root, 0)], 0)

    # -- batch ------------------------------------------------------------------------------
    def fit(self, X: Any) -> RandomCutForest:
        """Sample `num_samples_per_tree` records of X (n, d) per tree and build every tree; returns self."""
        X = _check_matrix("X", X)
        n, d = X.shape
        m = self.num_samples_per_tree
        if n < m:
            raise ValueError(f"num_samples_per_tree: {m} exceeds the {n} records of X; pass more records or a smaller num_samples_per_tree")
        self._allocate(d)
        chosen, weights = self._reservoir(n)
        self._build(X, chosen)
        self.weight[:] = weights
        self.n_slots[:] = m
        self.max_slot[:] = np.argmax(weights, axis=1)
        self.seen = n
        self._version += 1
        return self

    def _reservoir(self, n: int, chunk: int = 1 << 15) -> tuple[np.ndarray, np.ndarray]:
        """(T, m) indices of the records each tree's reservoir holds after seeing 0..n-1, and their weights."""
        m = self.num_samples_per_tree
        best_idx = np.zeros((self.num_trees, 0), dtype=np.int64)
        best_w = np.zeros((self.num_trees, 0))
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            w = np.concatenate([best_w, _sample_weights(self._tree_keys, start, stop, self.time_decay)], axis=1)
            idx = np.concatenate([best_idx, np.broadcast_to(np.arange(start, stop), (self.num_trees, stop - start))], axis=1)
            if w.shape[1] > m:
                keep = np.argpartition(w, m - 1, axis=1)[:, :m]
                w, idx = np.take_along_axis(w, keep, 1), np.take_along_axis(idx, keep, 1)
            best_w, best_idx = w, idx
        return best_idx, best_w

    def _build(self, X: np.ndarray, chosen: np.ndarray) -> None:
        """Grow every tree from its sample X[chosen[t]], one level of all trees per iteration."""
        T, m = chosen.shape
        cap = self.cut_dim.shape[1]
        d = X.shape[1]
        lo_f, hi_f = self.lo.reshape(T * cap, d), self.hi.reshape(T * cap, d)
        cut_dim_f, cut_value_f = self.cut_dim.reshape(-1), self.cut_value.reshape(-1)
        left_f, right_f, parent_f, mass_f = (a.reshape(-1) for a in (self.left, self.right, self.parent, self.mass))
        slot_leaf_f = self.slot_leaf.reshape(-1)

        points = chosen.reshape(-1)  # (T*m,) record index of every sampled slot
        active = np.arange(T * m)  # slots still to be split, grouped by segment
        seg_len = np.full(T, m)
        seg_tree = np.arange(T)
        seg_node = np.zeros(T, dtype=np.int64)
        seg_key = np.array([root_key(self.seed, t) for t in range(T)], dtype=np.uint64)
        n_nodes = np.ones(T, dtype=np.int64)
        self.root[:] = 0
        parent_f[np.arange(T) * cap] = -1
        with np.errstate(over="ignore"):
            while active.size:
                rows = points[active]  # (A,) record of each active slot
                seg_of = np.repeat(np.arange(seg_len.size), seg_len)  # (A,) segment of each slot
                lo, hi = _segment_box(X, rows, seg_len)  # (S, d) each
                flat = seg_tree * cap + seg_node
                lo_f[flat], hi_f[flat], mass_f[flat] = lo, hi, seg_len
                total = (hi - lo).sum(axis=1)
                leaf = (seg_len == 1) | (total <= 0)  # one point, or copies of one point
                cut_dim_f[flat[leaf]] = -1
                at_leaf = leaf[seg_of]
                slot_leaf_f[active[at_leaf]] = seg_node[seg_of[at_leaf]]
                split = ~leaf
                if not split.any():
                    break
                dim, value = random_cut(lo[split], hi[split], _unit_np(seg_key[split]))
                sflat = flat[split]
                cut_dim_f[sflat], cut_value_f[sflat] = dim, value
                # partition the slots of splitting segments, left before right, stably
                keep = ~at_leaf
                act, seg = active[keep], seg_of[keep]
                seg_rank = np.cumsum(split) - 1  # index among splitting segments
                r = seg_rank[seg]
                go_left = X[rows[keep], dim[r]] <= value[r]
                order = np.argsort(2 * r + (~go_left), kind="stable")
                active = act[order]
                n_left = np.bincount(r[go_left], minlength=dim.size)
                sizes = seg_len[split]
                tree = seg_tree[split]
                first = np.searchsorted(tree, tree, side="left")
                rank_in_tree = np.arange(tree.size) - first
                left_id = n_nodes[tree] + 2 * rank_in_tree
                n_nodes += 2 * np.bincount(tree, minlength=T)
                node = seg_node[split]
                left_f[sflat], right_f[sflat] = left_id, left_id + 1
                parent_f[tree * cap + left_id] = node
                parent_f[tree * cap + left_id + 1] = node
                seg_len = np.stack([n_left, sizes - n_left], axis=1).reshape(-1)
                seg_tree = np.repeat(tree, 2)
                seg_node = np.stack([left_id, left_id + 1], axis=1).reshape(-1)
                keys = seg_key[split]
                seg_key = np.stack([_combine_np(keys, np.zeros_like(keys)), _combine_np(keys, np.ones_like(keys))], axis=1).reshape(-1)
        # node ids n_nodes[t].. are free; the stack pops the smallest first
        for t in range(T):
            self.free[t, : cap - n_nodes[t]] = np.arange(cap - 1, n_nodes[t] - 1, -1)
        self.n_free[:] = cap - n_nodes

    # -- scoring ----------------------------------------------------------------------------
    def _both_scores(self, X: np.ndarray, device: Any) -> tuple[np.ndarray, np.ndarray]:
        if device is None:
            out_depth, out_codisp = np.empty(len(X)), np.empty(len(X))
            block = int(min(1024, max(16, len(X) // 8)))
            _score_batch_nb(X, self.root, self.cut_dim, self.cut_value, self.left, self.right, self.mass, self.lo, self.hi, block, out_depth, out_codisp)
            return out_depth, out_codisp
        return _score_torch(X, self, device, pairs_per_step=1 << 18 if str(device).startswith("cpu") else 1 << 23)

    def score(self, X: Any, kind: str = "depth", device: Any = None) -> np.ndarray:
        """(n,) anomaly score of every record of X (n, d) against every tree; the forest is unchanged.

        kind="depth":  SageMaker's score (AWS's open-source RCF): the expected 1 / depth at which
                       inserting the record would isolate it, times log2(sample size + 1); ~1 for
                       ordinary records, larger for anomalies.
        kind="codisp": the paper's collusive displacement: how many records would move up a level,
                       per record removed, when the record's subtree is deleted (expected over insertion).
        A record equal to a point in a tree is scored as that point (it is already in the tree).
        device: None computes with the compiled CPU kernel; a torch device ("cuda", "cpu") uses the
                vectorized torch scorer there (same numbers).
        """
        if kind not in ("depth", "codisp"):
            raise ValueError(f"kind: expected 'depth' or 'codisp', got {kind!r}")
        X = self._require_fitted("X", X)
        depth, codisp = self._both_scores(X, device)
        return depth if kind == "depth" else codisp

    def attribution(self, X: Any) -> np.ndarray:
        """(n, d) how much each feature contributes to the depth score; each row sums to score(X)[i].

        For a shingle, reshape a row to (shingle_size, features) to see which time offset raised it.
        """
        X = self._require_fitted("X", X)
        out = np.zeros_like(X)
        _attribution_batch_nb(X, self.root, self.cut_dim, self.cut_value, self.left, self.right, self.mass, self.lo, self.hi, out)
        return out

    # -- streaming --------------------------------------------------------------------------
    def update(self, X: Any, kind: str = "depth", chunk: int = 4096) -> np.ndarray:
        """Stream the records of X (n, d) in order: score each (before it is inserted), then offer it
        to every tree's reservoir. Returns (n,) scores, 0 while fewer than `output_after` records were seen."""
        if kind not in ("depth", "codisp"):
            raise ValueError(f"kind: expected 'depth' or 'codisp', got {kind!r}")
        X = _check_matrix("X", X, self.dimensions)
        _check_count("chunk", chunk, 1)
        if self.dimensions is None:
            self._allocate(X.shape[1])
        out = np.empty(len(X))
        for s in range(0, len(X), chunk):
            block = X[s : s + chunk]
            depth = np.empty((self.num_trees, len(block)))
            codisp = np.empty((self.num_trees, len(block)))
            _stream_nb(block, self.seen, self._tree_keys, self.time_decay, self.root, self.cut_dim, self.cut_value,
                       self.left, self.right, self.parent, self.mass, self.lo, self.hi, self.free, self.n_free,
                       self.weight, self.slot_leaf, self.n_slots, self.max_slot, depth, codisp)
            scores = (depth if kind == "depth" else codisp).mean(axis=0)
            arrivals = self.seen + np.arange(len(block))
            scores[arrivals < self.output_after] = 0.0
            out[s : s + len(block)] = scores
            self.seen += len(block)
        self._version += 1
        return out

    # -- inspection -------------------------------------------------------------------------
    def tree_nodes(self, tree: int = 0) -> dict[str, np.ndarray]:
        """The live nodes of one tree in pre-order (left first): arrays `depth`, `is_leaf`, `cut_dim`,
        `cut_value`, `mass`, `lo` (k, d), `hi` (k, d), `node` (ids) and `parent` (position in this list, -1 at the root)."""
        _check_count("tree", tree, 0)
        if tree >= self.num_trees:
            raise ValueError(f"tree: expected an index < num_trees={self.num_trees}, got {tree}")
        rows: list[tuple[int, int, int]] = []
        if self.dimensions is not None and self.root[tree] >= 0:
            stack = [(int(self.root[tree]), 0, -1)]
            while stack:
                u, depth, parent_pos = stack.pop()
                rows.append((u, depth, parent_pos))
                if self.cut_dim[tree, u] >= 0:
                    pos = len(rows) - 1
                    stack.append((int(self.right[tree, u]), depth + 1, pos))
                    stack.append((int(self.left[tree, u]), depth + 1, pos))
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        d = self.dimensions or 0
        return {
            "node": ids,
            "depth": np.array([r[1] for r in rows], dtype=np.int64),
            "parent": np.array([r[2] for r in rows], dtype=np.int64),
            "is_leaf": self.cut_dim[tree, ids] < 0 if ids.size else np.zeros(0, bool),
            "cut_dim": self.cut_dim[tree, ids] if ids.size else np.zeros(0, np.int64),
            "cut_value": self.cut_value[tree, ids] if ids.size else np.zeros(0),
            "mass": self.mass[tree, ids] if ids.size else np.zeros(0, np.int64),
            "lo": self.lo[tree, ids] if ids.size else np.zeros((0, d)),
            "hi": self.hi[tree, ids] if ids.size else np.zeros((0, d)),
        }

    def reservoir(self, tree: int = 0) -> np.ndarray:
        """(k, d) the records tree `tree` holds now, one row per reservoir slot (duplicates repeated)."""
        _check_count("tree", tree, 0)
        if tree >= self.num_trees:
            raise ValueError(f"tree: expected an index < num_trees={self.num_trees}, got {tree}")
        if self.dimensions is None:
            return np.zeros((0, 0))
        leaves = self.slot_leaf[tree, : self.n_slots[tree]]
        return self.lo[tree, leaves].copy()


# ----------------------------------------------------------------------------------------------
# One-call scoring, shingles, thresholds, evaluation against labelled windows
# ----------------------------------------------------------------------------------------------
def score(
    X: Any,
    num_trees: int = 100,
    num_samples_per_tree: int = 256,
    seed: int = 0,
    kind: str = "depth",
    device: Any = None,
) -> np.ndarray:
    """(n,) anomaly scores of X (n, d): fit a forest on X and score every record (SageMaker's batch
    transform after training). `kind` and `device` as in `RandomCutForest.score`."""
    forest = RandomCutForest(num_trees, num_samples_per_tree, seed=seed)
    return forest.fit(X).score(X, kind=kind, device=device)


def shingle(series: Any, shingle_size: int) -> np.ndarray:
    """Sliding windows of a time series: (n,) or (n, k) -> (n - shingle_size + 1, shingle_size * k).

    Row i holds times i .. i + shingle_size - 1, oldest first (features of one time step together);
    it belongs to time i + shingle_size - 1, the moment it is complete.
    """
    arr = np.asarray(series.detach().cpu().numpy() if hasattr(series, "detach") else series)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"series: expected numbers, got dtype {arr.dtype}")
    if arr.ndim not in (1, 2):
        raise ValueError(f"series: expected shape (n,) or (n, features), got {arr.shape}")
    size = _check_count("shingle_size", shingle_size, 1)
    if arr.shape[0] < size:
        raise ValueError(f"shingle_size: {size} exceeds the series length {arr.shape[0]}")
    arr = arr.astype(np.float64).reshape(arr.shape[0], -1)
    windows = np.lib.stride_tricks.sliding_window_view(arr, size, axis=0)  # (n-s+1, k, s)
    return np.ascontiguousarray(windows.transpose(0, 2, 1).reshape(windows.shape[0], -1))


def _check_num_std(num_std: Any) -> float:
    if isinstance(num_std, bool) or not isinstance(num_std, (int, float, np.floating, np.integer)):
        raise TypeError(f"num_std: expected a number, got {num_std!r}")
    if not (math.isfinite(num_std) and num_std >= 0):
        raise ValueError(f"num_std: expected a finite number >= 0, got {num_std}")
    return float(num_std)


def sigma_threshold(scores: Any, num_std: float = 3.0) -> float:
    """SageMaker's rule of thumb: mean(scores) + num_std * std(scores) (population std)."""
    values = _check_vector("scores", scores)
    return float(values.mean() + _check_num_std(num_std) * values.std())


def running_threshold(scores: Any, num_std: float = 3.0, warmup: int = 100) -> np.ndarray:
    """(n,) causal version of `sigma_threshold`: entry t uses only scores[:t] (the past), so a stream
    can raise an alarm the moment a score arrives. The first `warmup` entries are +inf (no alarms)."""
    values = _check_vector("scores", scores)
    k = _check_num_std(num_std)
    warmup = _check_count("warmup", warmup, 2)
    n = values.size
    count = np.arange(n, dtype=np.float64)
    # shifting by the first score keeps the running variance accurate when scores sit far from 0
    centred = values - values[0]
    s1 = np.concatenate([[0.0], np.cumsum(centred)[:-1]])
    s2 = np.concatenate([[0.0], np.cumsum(centred**2)[:-1]])
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / count
        var = np.maximum(s2 / count - mean**2, 0.0)
        out = values[0] + mean + k * np.sqrt(var)
    out[:warmup] = np.inf
    return out


def window_detection(alarms: Any, windows: Sequence[tuple[int, int]]) -> dict[str, Any]:
    """How alarms (n,) bool line up with labelled windows [(start, stop), ...] (indices, stop exclusive).

    Returns found (list[bool] per window), delays (list: alarm index - start, None when missed),
    false_alarms (number of alarm runs entirely outside every window) and alarm_points.
    """
    flags = np.asarray(alarms)
    if flags.ndim != 1:
        raise ValueError(f"alarms: expected a 1-D boolean array, got shape {flags.shape}")
    if flags.dtype != bool:
        raise TypeError(f"alarms: expected booleans, got dtype {flags.dtype}")
    inside = np.zeros(flags.size, dtype=bool)
    found, delays = [], []
    for i, window in enumerate(windows):
        if len(window) != 2:
            raise ValueError(f"windows[{i}]: expected (start, stop), got {window!r}")
        start, stop = int(window[0]), int(window[1])
        if not 0 <= start < stop <= flags.size:
            raise ValueError(f"windows[{i}]: expected 0 <= start < stop <= {flags.size}, got {(start, stop)}")
        inside[start:stop] = True
        hits = np.flatnonzero(flags[start:stop])
        found.append(bool(hits.size))
        delays.append(int(hits[0]) if hits.size else None)
    outside = flags & ~inside
    # count runs of consecutive outside alarms: a run starts where the previous step had none
    runs = int(np.sum(outside[1:] & ~outside[:-1]) + (outside[0] if outside.size else 0))
    return {"found": found, "delays": delays, "false_alarms": runs, "alarm_points": int(flags.sum())}
