"""helpers.rcf: the random cut forest as a specification, checked against plain references.

References: a plain recursive tree builder and brute-force insertion outcomes written here,
hand-computed scores on a hand-built tree, exact probabilities on tiny trees, and (when installed)
rrcf, the paper's reference implementation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from helpers import rcf

SEEDS = [0, 1, 2]


# ----------------------------------------------------------------------------------------------
# Plain references
# ----------------------------------------------------------------------------------------------
def plain_tree(points: np.ndarray, key: int, depth: int = 0) -> list[dict]:
    """The paper's tree, built recursively with the forest's per-node random numbers; pre-order."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    node = {"depth": depth, "mass": len(points), "lo": lo, "hi": hi}
    if len(points) == 1 or (hi - lo).sum() == 0:
        return [{**node, "leaf": True}]
    dim, value = rcf.random_cut(lo, hi, rcf.key_to_uniform(key))
    goes_left = points[:, dim] <= value
    left = plain_tree(points[goes_left], rcf.child_key(key, 0), depth + 1)
    right = plain_tree(points[~goes_left], rcf.child_key(key, 1), depth + 1)
    return [{**node, "leaf": False, "dim": int(dim), "value": float(value)}] + left + right


def forest_from_nested(spec, d: int) -> rcf.RandomCutForest:
    """A one-tree forest holding a hand-built tree. spec: a leaf is (point tuple, mass); an internal
    node is ("cut", dim, value, left_spec, right_spec)."""
    leaves: list[tuple[tuple, int]] = []

    def count(s):
        if s[0] == "cut":
            count(s[3])
            count(s[4])
        else:
            leaves.append(s)

    count(spec)
    total = sum(m for _, m in leaves)
    forest = rcf.RandomCutForest(1, total, seed=0)
    forest._allocate(d)
    capacity = forest.cut_dim.shape[1]
    ids = iter(range(capacity))
    slots = iter(range(total))

    def place(s, parent):
        u = next(ids)
        forest.parent[0, u] = parent
        if s[0] == "cut":
            _, dim, value, left, right = s
            a, b = place(left, u), place(right, u)
            forest.cut_dim[0, u], forest.cut_value[0, u] = dim, value
            forest.left[0, u], forest.right[0, u] = a, b
            forest.mass[0, u] = forest.mass[0, a] + forest.mass[0, b]
            forest.lo[0, u] = np.minimum(forest.lo[0, a], forest.lo[0, b])
            forest.hi[0, u] = np.maximum(forest.hi[0, a], forest.hi[0, b])
        else:
            point, mass = s
            forest.cut_dim[0, u], forest.mass[0, u] = -1, mass
            forest.lo[0, u] = forest.hi[0, u] = np.asarray(point, dtype=float)
            for _ in range(mass):
                forest.slot_leaf[0, next(slots)] = u
        return u

    forest.root[0] = place(spec, -1)
    used = int(np.sum(forest.cut_dim[0] != -2))
    forest.free[0, : capacity - used] = np.arange(capacity - 1, used - 1, -1)
    forest.n_free[0] = capacity - used
    forest.n_slots[0] = total
    forest.weight[0] = 0.0
    return forest


def as_python_tree(forest: rcf.RandomCutForest, t: int = 0) -> dict[int, dict]:
    """The tree as a dict of nodes (id -> parent, children, mass, box, cut), for brute force."""
    nodes = {}
    for u in np.flatnonzero(forest.cut_dim[t] != -2):
        u = int(u)
        nodes[u] = {
            "parent": int(forest.parent[t, u]),
            "children": (int(forest.left[t, u]), int(forest.right[t, u])) if forest.cut_dim[t, u] >= 0 else None,
            "mass": int(forest.mass[t, u]),
            "lo": forest.lo[t, u].copy(),
            "hi": forest.hi[t, u].copy(),
            "dim": int(forest.cut_dim[t, u]),
            "value": float(forest.cut_value[t, u]),
        }
    return nodes


def codisp_of_leaf(nodes: dict[int, dict], leaf: int) -> float:
    """The paper's CoDisp: max over the leaf and its ancestors below the root of sibling mass / own mass."""
    ratios = []
    node = leaf
    while nodes[node]["parent"] >= 0:
        parent = nodes[node]["parent"]
        sibling = [c for c in nodes[parent]["children"] if c != node][0]
        ratios.append(nodes[sibling]["mass"] / nodes[node]["mass"])
        node = parent
    return max(ratios, default=0.0)


def brute_force_scores(forest: rcf.RandomCutForest, t: int, x: np.ndarray) -> tuple[float, float]:
    """(depth score, CoDisp) of x in tree t by enumerating where an insertion of x can end up.

    Each outcome (x cut off above node u, with its probability) is built as an explicit new tree and
    CoDisp read off it; the depth score uses AWS's leaf-to-root recursion
    score = q * 1/(depth+1) + (1 - q) * score_below.
    """
    nodes = as_python_tree(forest, t)
    root = int(forest.root[t])
    path = [root]
    while nodes[path[-1]]["children"] is not None:
        u = nodes[path[-1]]
        path.append(u["children"][0] if x[u["dim"]] <= u["value"] else u["children"][1])
    tree_mass = nodes[root]["mass"]

    def cutoff_probability(u: int) -> float:
        lo, hi = nodes[u]["lo"], nodes[u]["hi"]
        grown = (np.maximum(hi, x) - np.minimum(lo, x)).sum()
        return 0.0 if grown == 0 else (grown - (hi - lo).sum()) / grown

    leaf = path[-1]
    in_tree = np.array_equal(nodes[leaf]["lo"], x)
    # depth score, leaf to root
    if in_tree:
        n = nodes[leaf]["mass"]
        depth = (1 - n / (2 * tree_mass)) / (len(path) - 1 + math.log2(n + 1))
    else:
        depth = 1 / len(path)
    for k in range(len(path) - 2, -1, -1):
        q = cutoff_probability(path[k])
        depth = q / (k + 1) + (1 - q) * depth
    depth *= math.log2(tree_mass + 1)
    # CoDisp, outcome by outcome
    if in_tree:
        return depth, codisp_of_leaf(nodes, leaf)
    expected, alive = 0.0, 1.0
    for u in path:
        q = 1.0 if u == leaf else cutoff_probability(u)
        if q == 0:
            continue
        grown = {k: dict(v) for k, v in nodes.items()}
        new_leaf, new_branch = max(nodes) + 1, max(nodes) + 2
        parent = grown[u]["parent"]
        grown[new_leaf] = {"parent": new_branch, "children": None, "mass": 1}
        grown[new_branch] = {"parent": parent, "children": (u, new_leaf), "mass": grown[u]["mass"] + 1}
        grown[u]["parent"] = new_branch
        if parent >= 0:
            grown[parent]["children"] = tuple(new_branch if c == u else c for c in grown[parent]["children"])
        a = parent
        while a >= 0:
            grown[a]["mass"] += 1
            a = grown[a]["parent"]
        expected += alive * q * codisp_of_leaf(grown, new_leaf)
        alive *= 1 - q
    return depth, expected


def check_tree_invariants(forest: rcf.RandomCutForest, t: int) -> None:
    """Masses add up, boxes are the boxes of their leaves, cuts separate the children, and the
    reservoir's slots point at leaves holding their records."""
    nodes = as_python_tree(forest, t)
    root = int(forest.root[t])
    seen = set()

    def visit(u: int) -> tuple[np.ndarray, np.ndarray, int]:
        seen.add(u)
        node = nodes[u]
        if node["children"] is None:
            assert node["dim"] == -1
            np.testing.assert_array_equal(node["lo"], node["hi"])
            return node["lo"], node["hi"], node["mass"]
        a, b = node["children"]
        assert nodes[a]["parent"] == u and nodes[b]["parent"] == u
        lo_a, hi_a, m_a = visit(a)
        lo_b, hi_b, m_b = visit(b)
        assert node["mass"] == m_a + m_b
        np.testing.assert_array_equal(node["lo"], np.minimum(lo_a, lo_b))
        np.testing.assert_array_equal(node["hi"], np.maximum(hi_a, hi_b))
        dim, value = node["dim"], node["value"]
        assert hi_a[dim] <= value < lo_b[dim], "the cut must send the whole left box left and the right box right"
        return node["lo"], node["hi"], node["mass"]

    if root < 0:
        assert forest.n_slots[t] == 0 or forest.tree_sizes[t] == 0
        return
    assert nodes[root]["parent"] == -1
    _, _, total = visit(root)
    assert seen == set(nodes), "every live node is reachable from the root"
    assert total == forest.n_slots[t]
    leaves = forest.slot_leaf[t, : forest.n_slots[t]]
    counts = np.bincount(leaves, minlength=forest.cut_dim.shape[1])
    for u, node in nodes.items():
        if node["children"] is None:
            assert counts[u] == node["mass"], "a leaf's mass is the number of reservoir slots holding it"
    free = set(forest.free[t, : forest.n_free[t]].tolist())
    assert free.isdisjoint(nodes) and len(free) + len(nodes) == forest.cut_dim.shape[1]


def blobs(seed: int, n: int = 300, d: int = 3, outliers: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    X[:outliers] += 8.0 * rng.choice([-1, 1], size=(outliers, d))
    return X


# ----------------------------------------------------------------------------------------------
# Random numbers and the cut
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
def test_counter_based_random_numbers_agree_in_python_numpy_and_numba(seed):
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, 2**63, size=50, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    with np.errstate(over="ignore"):
        by_numpy = rcf._unit_np(keys)
        children = rcf._combine_np(keys, np.ones_like(keys))
    for key, u, child in zip(keys, by_numpy, children):
        assert rcf.key_to_uniform(int(key)) == u == rcf._unit_nb(key)
        assert rcf.child_key(int(key), 1) == int(child) == int(rcf._combine_nb(key, np.uint64(1)))


def test_node_uniforms_are_uniform_on_the_open_unit_interval():
    key = rcf.root_key(7, 3)
    draws, frontier = [], [key]
    while len(draws) < 4000:  # the keys of a complete binary tree, level by level
        frontier = [rcf.child_key(k, side) for k in frontier for side in (0, 1)]
        draws += [rcf.key_to_uniform(k) for k in frontier]
    draws = np.array(draws)
    assert 0 < draws.min() and draws.max() < 1
    assert stats.kstest(draws, "uniform").pvalue > 1e-3


@pytest.mark.parametrize("seed", SEEDS)
def test_random_cut_picks_dimensions_in_proportion_to_their_range(seed):
    rng = np.random.default_rng(seed)
    lo = rng.standard_normal(4)
    span = np.array([1.0, 3.0, 0.0, 6.0])
    u = rng.random(20000)
    dim, value = rcf.random_cut(np.tile(lo, (u.size, 1)), np.tile(lo + span, (u.size, 1)), u)
    counts = np.bincount(dim, minlength=4)
    assert counts[2] == 0, "a dimension without range is never cut"
    expected = u.size * span[[0, 1, 3]] / span.sum()
    assert stats.chisquare(counts[[0, 1, 3]], expected).pvalue > 1e-3
    offsets = (value[dim == 3] - lo[3]) / span[3]
    assert stats.kstest(offsets, "uniform").pvalue > 1e-3, "the value is uniform within the range"
    assert np.all(value < (lo + span)[dim]), "the cut stays below the top so both sides get points"


@pytest.mark.parametrize("seed", SEEDS)
def test_cut_separates_a_subset_with_probability_proportional_to_its_box_perimeter(seed):
    # the paper's lemma: P(a random cut of box(T) splits S) = perimeter(box(S)) / perimeter(box(T))
    rng = np.random.default_rng(seed)
    T = rng.uniform(-5, 5, size=(40, 3)) * np.array([1.0, 4.0, 0.5])
    S = T[:6]
    u = rng.random(40000)
    dim, value = rcf.random_cut(np.tile(T.min(0), (u.size, 1)), np.tile(T.max(0), (u.size, 1)), u)
    lo_s, hi_s = S.min(0), S.max(0)
    splits = (lo_s[dim] <= value) & (value < hi_s[dim])
    p = (hi_s - lo_s).sum() / (T.max(0) - T.min(0)).sum()
    assert stats.binomtest(int(splits.sum()), u.size, p).pvalue > 1e-3


def test_compiled_cut_of_a_grown_box_matches_the_vectorized_cut():
    rng = np.random.default_rng(5)
    for _ in range(200):
        lo = rng.standard_normal(5)
        hi = lo + rng.exponential(size=5) * (rng.random(5) > 0.3)
        x = rng.standard_normal(5) * 2
        u = rng.random()
        expected = rcf.random_cut(np.minimum(lo, x), np.maximum(hi, x), u)
        got = rcf._random_cut_nb(lo, hi, x, u)
        assert (int(got[0]), got[1]) == (int(expected[0]), expected[1])


def test_random_cut_rejects_boxes_that_cannot_be_cut():
    with pytest.raises(ValueError, match="zero range"):
        rcf.random_cut(np.zeros(3), np.zeros(3), 0.5)
    with pytest.raises(ValueError, match="lo <= hi"):
        rcf.random_cut(np.ones(2), np.zeros(2), 0.5)


# ----------------------------------------------------------------------------------------------
# Batch building
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
def test_level_by_level_build_grows_the_same_trees_as_the_plain_recursive_builder(seed):
    X = blobs(seed, n=60, d=3)
    forest = rcf.RandomCutForest(num_trees=4, num_samples_per_tree=60, seed=seed).fit(X)
    for t in range(4):
        plain = plain_tree(X, rcf.root_key(seed, t))
        ours = forest.tree_nodes(t)
        assert len(plain) == len(ours["node"])
        for i, node in enumerate(plain):
            assert ours["depth"][i] == node["depth"] and ours["mass"][i] == node["mass"]
            np.testing.assert_array_equal(ours["lo"][i], node["lo"])
            np.testing.assert_array_equal(ours["hi"][i], node["hi"])
            assert bool(ours["is_leaf"][i]) == node["leaf"]
            if not node["leaf"]:
                assert ours["cut_dim"][i] == node["dim"] and ours["cut_value"][i] == node["value"]


@pytest.mark.parametrize("seed", SEEDS)
def test_fit_builds_valid_trees_on_reservoir_samples(seed):
    X = blobs(seed, n=500, d=4)
    forest = rcf.RandomCutForest(num_trees=6, num_samples_per_tree=64, seed=seed).fit(X)
    assert np.all(forest.tree_sizes == 64)
    rows = {tuple(r) for r in X}
    for t in range(6):
        check_tree_invariants(forest, t)
        sample = forest.reservoir(t)
        assert len({tuple(r) for r in sample}) == 64 and all(tuple(r) in rows for r in sample)
    assert not np.array_equal(forest.reservoir(0), forest.reservoir(1)), "each tree samples on its own"


def test_reservoir_samples_are_uniform_over_the_records():
    n, m = 40, 10
    forest = rcf.RandomCutForest(num_trees=2000, num_samples_per_tree=m, seed=3)
    chosen, _ = forest._reservoir(n)
    counts = np.bincount(chosen.reshape(-1), minlength=n)
    assert all(len(set(row)) == m for row in chosen[:50]), "sampling is without replacement"
    assert stats.chisquare(counts).pvalue > 1e-3


def test_duplicates_share_one_leaf_with_a_mass():
    X = np.repeat(np.array([[0.0, 0.0], [1.0, 2.0], [5.0, 5.0]]), [30, 20, 10], axis=0)
    forest = rcf.RandomCutForest(num_trees=3, num_samples_per_tree=60, seed=0).fit(X)
    for t in range(3):
        nodes = forest.tree_nodes(t)
        assert sorted(nodes["mass"][nodes["is_leaf"]].tolist()) == [10, 20, 30]
        check_tree_invariants(forest, t)
    scores = forest.score(np.array([[5.0, 5.0], [0.0, 0.0], [9.0, 9.0]]))
    assert np.all(np.isfinite(scores)) and scores[2] > scores[0] > scores[1]


def test_identical_records_make_a_single_leaf_and_finite_scores():
    X = np.ones((50, 3))
    forest = rcf.RandomCutForest(num_trees=2, num_samples_per_tree=50).fit(X)
    assert forest.tree_nodes(0)["mass"].tolist() == [50]
    assert forest.score(X[:1], kind="codisp")[0] == 0.0
    far = forest.score(np.array([[1.0, 1.0, 2.0]]))
    near = forest.score(X[:1])
    assert np.isfinite(far).all() and far[0] > near[0]


# ----------------------------------------------------------------------------------------------
# Scores
# ----------------------------------------------------------------------------------------------
HAND_TREE = ("cut", 0, 5.0, ("cut", 1, 0.5, ("cut", 0, 0.5, ((0.0, 0.0), 1), ((1.0, 0.0), 1)), ((0.0, 1.0), 1)), ((10.0, 10.0), 1))


def test_scores_on_a_hand_built_tree_match_hand_computation():
    forest = forest_from_nested(HAND_TREE, d=2)
    check_tree_invariants(forest, 0)
    # the planted outlier (10, 10) is in the tree, one cut below the root, beside 3 points
    assert forest.score(np.array([[10.0, 10.0]]), kind="codisp")[0] == pytest.approx(3.0)
    damped_seen = (1 - 1 / 8) / (1 + math.log2(2))
    assert forest.score(np.array([[10.0, 10.0]]))[0] == pytest.approx(damped_seen * math.log2(5))
    # (20, 10) is cut off at the root with probability 10 / 30, otherwise beside the outlier's leaf
    q = 10 / 30
    assert forest.score(np.array([[20.0, 10.0]]), kind="codisp")[0] == pytest.approx(q * 4 + (1 - q) * max(1, 3 / 2))
    assert forest.score(np.array([[20.0, 10.0]]))[0] == pytest.approx((q / 1 + (1 - q) / 2) * math.log2(5))


@pytest.mark.parametrize("seed", SEEDS)
def test_scores_match_brute_force_insertion_outcomes(seed):
    X = blobs(seed, n=40, d=3)
    forest = rcf.RandomCutForest(num_trees=3, num_samples_per_tree=25, seed=seed).fit(X)
    rng = np.random.default_rng(seed + 100)
    queries = np.vstack([X[:10], rng.standard_normal((10, 3)) * 3])  # some in the trees, some new
    depth, codisp = forest.score(queries), forest.score(queries, kind="codisp")
    for i, x in enumerate(queries):
        brute = np.array([brute_force_scores(forest, t, x) for t in range(3)]).mean(axis=0)
        assert depth[i] == pytest.approx(brute[0], rel=1e-10)
        assert codisp[i] == pytest.approx(brute[1], rel=1e-10)


@pytest.mark.parametrize("seed", SEEDS[:2])
def test_codisp_matches_rrcf_monte_carlo_insertions(seed):
    rrcf = pytest.importorskip("rrcf")
    X = blobs(seed, n=30, d=2)
    tree = rrcf.RCTree(X, random_state=seed)
    spec = {}

    def nested(node):
        if isinstance(node, rrcf.Leaf):
            return (tuple(node.x), node.n)
        return ("cut", node.q, node.p, nested(node.l), nested(node.r))

    spec = nested(tree.root)
    forest = forest_from_nested(spec, d=2)
    x = np.array([3.0, -2.5])
    ours = forest.score(x[None], kind="codisp")[0]
    draws = []
    for _ in range(3000):
        tree.insert_point(x, index="q")
        draws.append(tree.codisp("q"))
        tree.forget_point("q")
    draws = np.array(draws)
    assert abs(ours - draws.mean()) < 5 * draws.std() / math.sqrt(draws.size) + 1e-9


def test_outliers_score_highest_in_one_and_many_dimensions():
    for d in (1, 64):
        X = blobs(0, n=400, d=d, outliers=3)
        for kind in ("depth", "codisp"):
            scores = rcf.score(X, num_trees=40, num_samples_per_tree=128, seed=1, kind=kind)
            assert set(np.argsort(-scores)[:3]) == {0, 1, 2}, f"d={d}, kind={kind}"


def test_depth_scores_sit_near_one_for_ordinary_points():
    scores = rcf.score(blobs(0, n=2000, d=3, outliers=0), num_trees=50, num_samples_per_tree=256)
    assert 0.6 < np.median(scores) < 1.2


@pytest.mark.parametrize("seed", SEEDS)
def test_the_same_seed_gives_the_same_scores(seed):
    X = blobs(seed)
    a = rcf.score(X, num_trees=20, num_samples_per_tree=64, seed=seed)
    b = rcf.RandomCutForest(20, 64, seed=seed).fit(X).score(X)
    c = rcf.score(X, num_trees=20, num_samples_per_tree=64, seed=seed + 1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_trees_do_not_depend_on_how_many_trees_are_grown():
    X = blobs(4)
    small = rcf.RandomCutForest(3, 64, seed=9).fit(X)
    large = rcf.RandomCutForest(10, 64, seed=9).fit(X)
    for key in ("cut_dim", "cut_value", "mass"):
        np.testing.assert_array_equal(small.tree_nodes(2)[key], large.tree_nodes(2)[key])


@pytest.fixture
def one_torch_thread():
    # torch's CPU thread pool spins badly on a busy 2-core machine; one thread is 30x faster there
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("seed", SEEDS[:2])
def test_torch_scorer_matches_the_compiled_scorer(seed, one_torch_thread):
    X = blobs(seed, n=300, d=5)
    forest = rcf.RandomCutForest(12, 64, seed=seed).fit(X)
    queries = np.vstack([X, np.random.default_rng(seed).standard_normal((50, 5)) * 4])
    for kind in ("depth", "codisp"):
        np.testing.assert_allclose(forest.score(queries, kind=kind, device="cpu"), forest.score(queries, kind=kind), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_attribution_splits_the_depth_score_by_feature(seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((400, 4))
    forest = rcf.RandomCutForest(30, 128, seed=seed).fit(X)
    queries = np.vstack([X[:5], rng.standard_normal((5, 4))])
    queries[-1, 2] += 9.0  # anomalous in feature 2 only
    attribution = forest.attribution(queries)
    np.testing.assert_allclose(attribution.sum(axis=1), forest.score(queries), rtol=1e-9)
    assert np.all(attribution >= 0)
    assert np.argmax(attribution[-1]) == 2 and attribution[-1, 2] > 0.8 * attribution[-1].sum()


# ----------------------------------------------------------------------------------------------
# Streaming
# ----------------------------------------------------------------------------------------------
def _insert(forest, t, x, key):
    return rcf._insert_nb(x, t, np.uint64(key), forest.root, forest.cut_dim, forest.cut_value, forest.left,
                          forest.right, forest.parent, forest.mass, forest.lo, forest.hi, forest.free, forest.n_free)


def _delete(forest, t, leaf):
    rcf._delete_nb(t, leaf, forest.root, forest.cut_dim, forest.left, forest.right, forest.parent, forest.mass,
                   forest.lo, forest.hi, forest.free, forest.n_free)


@pytest.mark.parametrize("seed", SEEDS)
def test_insert_then_delete_returns_the_tree_to_the_same_state(seed):
    X = blobs(seed, n=100, d=3)
    forest = rcf.RandomCutForest(5, 50, seed=seed).fit(X)
    rng = np.random.default_rng(seed)
    for t in range(5):
        before = forest.tree_nodes(t)
        for i in range(20):
            x = rng.standard_normal(3) * 3 if i % 2 else forest.reservoir(t)[i]  # new points and duplicates
            leaf = _insert(forest, t, x, key=i)
            np.testing.assert_array_equal(forest.lo[t, leaf], x)
            _delete(forest, t, leaf)
            after = forest.tree_nodes(t)
            for key in ("depth", "is_leaf", "cut_dim", "cut_value", "mass", "lo", "hi"):
                np.testing.assert_array_equal(after[key], before[key])


def test_insertion_keeps_trees_distributed_as_if_built_from_scratch():
    # points 0, 1, 3 on a line: a tree built on them cuts 0 | {1, 3} first with probability 1/3
    points = np.array([[0.0], [1.0], [3.0]])
    trees = 3000
    built = rcf.RandomCutForest(trees, 3, seed=1).fit(points)
    streamed = rcf.RandomCutForest(trees, 3, seed=2)
    streamed.update(points[[2, 0, 1]])  # a different arrival order on purpose

    def zero_alone(forest):
        return sum(forest.mass[t, forest.left[t, forest.root[t]]] == 1 and forest.lo[t, forest.left[t, forest.root[t]], 0] == 0.0 for t in range(trees))

    for forest in (built, streamed):
        assert stats.binomtest(int(zero_alone(forest)), trees, 1 / 3).pvalue > 1e-3


def test_deletion_keeps_trees_distributed_as_if_built_from_scratch():
    # trees on 0, 1, 3, 7 with 7 deleted must look like trees built on 0, 1, 3
    points = np.array([[0.0], [1.0], [3.0], [7.0]])
    trees = 3000
    forest = rcf.RandomCutForest(trees, 4, seed=5).fit(points)
    for t in range(trees):
        leaf = forest.slot_leaf[t][forest.lo[t, forest.slot_leaf[t], 0] == 7.0][0]
        _delete(forest, t, leaf)
    zero_alone = sum(forest.mass[t, forest.left[t, forest.root[t]]] == 1 and forest.lo[t, forest.left[t, forest.root[t]], 0] == 0.0 for t in range(trees))
    assert stats.binomtest(int(zero_alone), trees, 1 / 3).pvalue > 1e-3


@pytest.mark.parametrize("seed", SEEDS)
def test_streaming_keeps_valid_trees_over_reservoir_samples(seed):
    X = blobs(seed, n=600, d=3)
    forest = rcf.RandomCutForest(4, 32, seed=seed, time_decay=0.01 * seed)
    forest.update(X[:250])
    forest.update(X[250:])
    assert forest.seen == 600 and np.all(forest.tree_sizes == 32)
    rows = {tuple(r) for r in X}
    for t in range(4):
        check_tree_invariants(forest, t)
        assert all(tuple(r) in rows for r in forest.reservoir(t))


@pytest.mark.parametrize("seed", SEEDS)
def test_streaming_reservoir_holds_the_records_a_batch_fit_samples(seed):
    X = blobs(seed, n=400, d=2)
    streamed = rcf.RandomCutForest(5, 40, seed=seed)
    streamed.update(X)
    built = rcf.RandomCutForest(5, 40, seed=seed).fit(X)
    for t in range(5):
        a = sorted(map(tuple, streamed.reservoir(t)))
        b = sorted(map(tuple, built.reservoir(t)))
        assert a == b


def test_time_decay_keeps_recent_records():
    X = np.arange(2000.0)[:, None]
    uniform = rcf.RandomCutForest(8, 64, seed=0)
    uniform.update(X)
    recent = rcf.RandomCutForest(8, 64, seed=0, time_decay=0.05)
    recent.update(X)
    assert np.median(uniform.reservoir(0)) < 1500
    assert np.median(recent.reservoir(0)) > 1900


@pytest.mark.parametrize("seed", SEEDS[:2])
def test_streaming_and_batch_scores_agree_in_distribution(seed):
    X = blobs(seed, n=1500, d=3, outliers=0)
    queries = blobs(seed + 10, n=300, d=3, outliers=5)
    built = rcf.RandomCutForest(100, 128, seed=seed).fit(X)
    streamed = rcf.RandomCutForest(100, 128, seed=seed + 1)
    streamed.update(X)
    a, b = built.score(queries), streamed.score(queries)
    assert stats.ks_2samp(a, b).pvalue > 1e-3
    assert np.corrcoef(a, b)[0, 1] > 0.95
    assert set(np.argsort(-a)[:5]) == set(np.argsort(-b)[:5]) == set(range(5))


def test_update_scores_each_record_before_inserting_it():
    X = blobs(0, n=200, d=2, outliers=0)
    forest = rcf.RandomCutForest(20, 64, seed=0, output_after=10)
    first = forest.update(X[:150])
    assert np.all(first[:10] == 0) and np.all(first[10:] > 0)
    probe = rcf.RandomCutForest(20, 64, seed=0, output_after=10)
    probe.update(X[:150])
    expected = probe.score(X[150:151])
    np.testing.assert_allclose(forest.update(X[150:151]), expected)


# ----------------------------------------------------------------------------------------------
# Shingles, thresholds, windows
# ----------------------------------------------------------------------------------------------
def test_shingle_matches_a_loop_for_one_and_several_features():
    series = np.arange(10.0)
    np.testing.assert_array_equal(rcf.shingle(series, 4), np.array([series[i : i + 4] for i in range(7)]))
    multi = np.stack([np.arange(6.0), -np.arange(6.0)], axis=1)
    assert rcf.shingle(multi, 2)[1].tolist() == [1.0, -1.0, 2.0, -2.0]
    assert rcf.shingle(series, 1).shape == (10, 1)
    assert rcf.shingle(series, 10).shape == (1, 10)


def test_shingle_rejects_bad_input():
    with pytest.raises(ValueError, match="exceeds"):
        rcf.shingle(np.arange(3.0), 4)
    with pytest.raises(ValueError, match="shingle_size"):
        rcf.shingle(np.arange(3.0), 0)
    with pytest.raises(ValueError, match="series"):
        rcf.shingle(np.zeros((2, 2, 2)), 1)
    with pytest.raises(TypeError, match="series"):
        rcf.shingle(np.array(["a", "b"]), 1)


def test_sigma_threshold_is_mean_plus_k_standard_deviations():
    scores = np.random.default_rng(0).standard_normal(1000)
    assert rcf.sigma_threshold(scores) == pytest.approx(scores.mean() + 3 * scores.std())
    assert rcf.sigma_threshold(scores, num_std=0) == pytest.approx(scores.mean())
    assert rcf.sigma_threshold(np.array([2.0])) == 2.0
    with pytest.raises(ValueError, match="finite"):
        rcf.sigma_threshold(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="num_std"):
        rcf.sigma_threshold(scores, num_std=-1)


def test_running_threshold_uses_only_the_past():
    scores = 1000 + np.random.default_rng(1).standard_normal(300)
    running = rcf.running_threshold(scores, num_std=2.5, warmup=20)
    assert np.all(np.isinf(running[:20]))
    for t in (20, 57, 299):
        past = scores[:t]
        assert running[t] == pytest.approx(past.mean() + 2.5 * past.std(), rel=1e-12)
    changed = scores.copy()
    changed[200:] += 50
    np.testing.assert_array_equal(rcf.running_threshold(changed, 2.5, 20)[:201], running[:201])


def test_window_detection_counts_found_windows_delays_and_false_alarm_runs():
    alarms = np.zeros(30, dtype=bool)
    alarms[[2, 3, 12, 14, 25]] = True
    out = rcf.window_detection(alarms, [(10, 16), (18, 22)])
    assert out["found"] == [True, False]
    assert out["delays"] == [2, None]
    assert out["false_alarms"] == 2  # the run 2-3 and the alarm at 25
    assert out["alarm_points"] == 5
    assert rcf.window_detection(np.zeros(5, dtype=bool), []) == {"found": [], "delays": [], "false_alarms": 0, "alarm_points": 0}
    with pytest.raises(ValueError, match="windows"):
        rcf.window_detection(alarms, [(5, 40)])
    with pytest.raises(TypeError, match="alarms"):
        rcf.window_detection(np.zeros(5), [])


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "X, error, message",
    [
        (np.array([[0.0, np.nan]] * 10), ValueError, "finite"),
        (np.array([[0.0, np.inf]] * 10), ValueError, "finite"),
        (np.zeros(10), ValueError, "reshape"),
        (np.zeros((10, 2, 2)), ValueError, "2-D"),
        (np.zeros((0, 2)), ValueError, "at least one record"),
        (np.zeros((10, 0)), ValueError, "at least one feature"),
        (np.array([["a", "b"]] * 10), TypeError, "numeric"),
        ([[1.0, 2.0], [3.0]], TypeError, "2-D numeric"),
        (np.ones((10, 2)) * 1j, TypeError, "real"),
    ],
)
def test_fit_rejects_bad_records_with_a_clear_message(X, error, message):
    with pytest.raises(error, match=message):
        rcf.RandomCutForest(2, 4).fit(X)


def test_bad_settings_and_misuse_fail_clearly():
    X = blobs(0, n=50)
    with pytest.raises(ValueError, match="num_samples_per_tree: 64 exceeds the 50 records"):
        rcf.RandomCutForest(2, 64).fit(X)
    with pytest.raises(ValueError, match="num_trees"):
        rcf.RandomCutForest(0, 8)
    with pytest.raises(TypeError, match="num_samples_per_tree"):
        rcf.RandomCutForest(2, 8.5)
    with pytest.raises(ValueError, match="time_decay"):
        rcf.RandomCutForest(2, 8, time_decay=-1)
    with pytest.raises(ValueError, match="empty"):
        rcf.RandomCutForest(2, 8).score(X)
    forest = rcf.RandomCutForest(2, 8).fit(X)
    with pytest.raises(ValueError, match="expected 3 features"):
        forest.score(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="kind"):
        forest.score(X, kind="isolation")
    with pytest.raises(ValueError, match="expected 3 features"):
        forest.update(np.zeros((4, 5)))
    with pytest.raises(ValueError, match="tree"):
        forest.tree_nodes(2)


def test_one_feature_and_integer_records_are_accepted():
    X = np.random.default_rng(0).integers(0, 100, size=(300, 1))
    scores = rcf.score(X, num_trees=10, num_samples_per_tree=64)
    assert scores.shape == (300,) and np.isfinite(scores).all()
