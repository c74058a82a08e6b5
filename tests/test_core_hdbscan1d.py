"""The 1-D HDBSCAN kernel against the hdbscan package.

hdbscan.HDBSCAN is only defined up to the order of merges at exactly equal
mutual-reachability distance, and such ties are common in 1-D even without duplicate
timestamps (a point's core distance is the weight of several edges). So:
- with min_samples=1 (no ties for distinct points) labels equal HDBSCAN's exactly;
- for any min_samples, our tree has the same merge heights as the exact MST, and fed
  with our MST hdbscan's own tree code gives our labels; where the MST weights are all
  distinct, labels equal HDBSCAN's;
- on realistic timelines (with duplicates) the partitions agree to ARI >= 0.99.
"""

import warnings

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.sparse.csgraph import minimum_spanning_tree
from sklearn.metrics import adjusted_rand_score

from benchmarks.workloads import generate
from devstack.reference import hdbscan_block_labels
from tests import core_kernels as kern
from worker.core.blocks import block_bounds

hdbscan = pytest.importorskip("hdbscan")


def canon(labels):
    out, seen = np.full(len(labels), -1), {}
    for i, v in enumerate(np.asarray(labels).tolist()):
        if v >= 0:
            out[i] = seen.setdefault(v, len(seen))
    return out


def reference(x, mcs, ms, eps=0.0, single=False):
    return canon(hdbscan_block_labels(x, mcs, ms, eps, single))


# Integer milliseconds, as timestamps are; distinct gaps make min_samples=1 tie-free.
points = st.lists(st.integers(0, 10**9), min_size=2, max_size=120, unique=True).map(
    lambda v: np.sort(np.array(v, dtype=float))
)


@settings(max_examples=150, deadline=None)
@given(points, st.integers(2, 8), st.sampled_from([0.0, 0.5, 3.0]), st.booleans())
def test_equal_to_hdbscan_without_ties(x, mcs, eps_quantile, single):
    assume(x.shape[0] >= mcs and np.unique(np.diff(x)).shape[0] == x.shape[0] - 1)
    eps = float(np.quantile(np.diff(x), min(eps_quantile, 1.0))) * (eps_quantile > 0)
    ours = canon(kern.hdbscan_labels_1d(x, mcs, 1, eps, single))
    assert np.array_equal(ours, reference(x, mcs, 1, eps, single))


def test_core_distances_match_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(50):
        x = np.sort(rng.integers(0, 50, rng.integers(2, 40))).astype(float)
        k = int(rng.integers(1, x.shape[0]))
        d = np.abs(x[:, None] - x[None, :])
        expected = np.sort(d, axis=1)[:, k]  # column 0 is the point itself
        assert np.array_equal(kern.core_distances(x, k), expected)


def _our_mst(x, k):
    core = kern.core_distances(x, k)
    u, v, w = kern.candidate_edges(x, core, k)
    mst = kern.spanning_tree_ranks(x.shape[0], u, v)
    return u[mst], v[mst], w[mst], core


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(0, 400), min_size=3, max_size=80).map(lambda v: np.sort(np.array(v, float))), st.integers(1, 9)
)
def test_banded_mst_is_a_minimum_spanning_tree(x, ms):
    k = min(ms, x.shape[0] - 1)
    u, v, w, core = _our_mst(x, k)
    assert u.shape[0] == x.shape[0] - 1
    full = np.maximum(np.maximum(core[:, None], core[None, :]), np.abs(x[:, None] - x[None, :]))
    exact = minimum_spanning_tree(np.triu(full + 1.0, 1)).data - 1.0  # +1: zero weights are no edge
    assert np.array_equal(np.sort(w), np.sort(exact))


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(0, 10**5), min_size=4, max_size=150).map(lambda v: np.sort(np.array(v, float))),
    st.integers(2, 8),
    st.integers(1, 10),
    st.booleans(),
    st.booleans(),
)
def test_hdbscan_tree_code_on_our_mst_gives_our_labels(x, mcs, ms, use_eps, single):
    from hdbscan._hdbscan_linkage import label
    from hdbscan.hdbscan_ import _tree_to_labels

    if x.shape[0] < mcs:
        return
    eps = float(np.median(np.diff(x))) if use_eps else 0.0
    k = max(1, min(ms, x.shape[0] - 1))
    u, v, w, _ = _our_mst(x, k)
    tree = label(np.column_stack([u, v, w]).astype(float))
    expected = _tree_to_labels(x.reshape(-1, 1), tree, mcs, "eom", single, False, eps)[0]
    assert np.array_equal(canon(kern.hdbscan_labels_1d(x, mcs, ms, eps, single)), canon(expected))


def test_equal_to_hdbscan_when_mst_weights_are_distinct():
    rng = np.random.default_rng(3)
    checked = 0
    for trial in range(600):
        n = int(rng.integers(8, 30))
        x = np.sort(rng.random(n) * 1e6) if trial % 2 else np.cumsum(rng.lognormal(0, 1.5, n))
        mcs, ms = int(rng.integers(2, 6)), int(rng.integers(2, 6))
        w = _our_mst(x, min(ms, n - 1))[2]
        if np.unique(w).shape[0] < n - 1:
            continue
        checked += 1
        assert np.array_equal(canon(kern.hdbscan_labels_1d(x, mcs, ms)), reference(x, mcs, ms))
    assert checked >= 10


@pytest.mark.parametrize("family", ["bursts", "heavy", "exp", "bot"])
def test_partition_agrees_with_hdbscan_on_timelines(family):
    """Default parameters (epsilon 1200 s, allow_single_cluster), duplicates included."""
    tl = generate(family, weeks=2, seed=4)
    t = tl.t_ms.astype(float)
    bounds = block_bounds(tl.t_ms, 3_600_000)
    ours = np.full(t.shape[0], -1)
    ref = np.full(t.shape[0], -1)
    offset = 0
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        a = kern.hdbscan_labels_1d(t[lo:hi], 5, 5, 1_200_000.0, True)
        b = hdbscan_block_labels(t[lo:hi], 5, 5, 1_200_000.0, True)
        ours[lo:hi] = np.where(a >= 0, a + offset, -1)
        ref[lo:hi] = np.where(b >= 0, b + offset, -1)
        offset += hi - lo
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        noise_o = np.where(ours < 0, -1 - np.arange(t.shape[0]), ours)
        noise_r = np.where(ref < 0, -1 - np.arange(t.shape[0]), ref)
    assert adjusted_rand_score(noise_r, noise_o) >= 0.99
