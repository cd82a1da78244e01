"""kNN evaluation: agreement with scikit-learn, the tie rule, the weighted vote, chunking, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors

from simxir.errors import UserError
from simxir.eval.knn import knn_classify, knn_predict, majority_vote

KS = (5, 7, 11, 15, 17, 21)


def _data(n_train=400, n_test=150, d=12, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, d)) * 1.2
    ytr = rng.integers(0, classes, n_train)
    yte = rng.integers(0, classes, n_test)
    xtr = (centers[ytr] + rng.normal(size=(n_train, d))).astype(np.float32)
    xte = (centers[yte] + rng.normal(size=(n_test, d))).astype(np.float32)
    return xtr, ytr, xte, yte


def _clean_rows(xtr, ytr, xte, metric, ks):
    """Test rows with no vote tie at any k and a clear distance gap at every k boundary (float64)."""
    nn = NearestNeighbors(n_neighbors=max(ks) + 1, algorithm="brute", metric=metric)
    nn.fit(xtr.astype(np.float64))
    dist, idx = nn.kneighbors(xte.astype(np.float64))
    ok = np.ones(len(xte), bool)
    ncls = int(ytr.max()) + 1
    for i in range(len(xte)):
        for k in ks:
            if dist[i, k] - dist[i, k - 1] < 1e-5 * max(1.0, abs(dist[i, k])):
                ok[i] = False
            counts = np.bincount(ytr[idx[i, :k]], minlength=ncls)
            if (counts == counts.max()).sum() > 1:
                ok[i] = False
    return ok


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_majority_vote_matches_sklearn_without_ties(metric):
    xtr, ytr, xte, yte = _data()
    ok = _clean_rows(xtr, ytr, xte, metric, KS)
    assert ok.sum() > 60, "too few tie-free rows to make the comparison meaningful"
    preds = knn_predict(torch.from_numpy(xtr), torch.from_numpy(ytr), torch.from_numpy(xte), ks=KS,
                        metrics=(metric,), weighted_temperature=None, show_progress=False)
    for k in KS:
        clf = KNeighborsClassifier(n_neighbors=k, algorithm="brute", metric=metric, weights="uniform")
        clf.fit(xtr.astype(np.float64), ytr)
        ref = clf.predict(xte.astype(np.float64))
        ours = preds["knn"][metric][k].numpy()
        np.testing.assert_array_equal(ours[ok], ref[ok], err_msg=f"{metric} k={k}")


def test_binary_odd_k_matches_sklearn_on_every_row():
    """Two classes and odd k can never tie: every row must agree (only distance gaps filtered)."""
    xtr, ytr, xte, yte = _data(classes=2, seed=3)
    preds = knn_predict(torch.from_numpy(xtr), torch.from_numpy(ytr), torch.from_numpy(xte), ks=KS,
                        weighted_temperature=None, show_progress=False)
    for metric in ("cosine", "euclidean"):
        ok = _clean_rows(xtr, ytr, xte, metric, KS)
        assert ok.mean() > 0.95
        for k in KS:
            clf = KNeighborsClassifier(n_neighbors=k, algorithm="brute", metric=metric).fit(xtr, ytr)
            np.testing.assert_array_equal(preds["knn"][metric][k].numpy()[ok], clf.predict(xte)[ok])


def test_tie_goes_to_tied_class_with_nearest_neighbour():
    # neighbour labels nearest first: [2, 1, 0, 1, 0] -> counts {0: 2, 1: 2, 2: 1}; tied {0, 1};
    # the nearest neighbour (class 2) is not tied, the first tied one in the list is class 1.
    lab = torch.tensor([[2, 1, 0, 1, 0],
                        [0, 1, 1, 0, 2],     # tied {0,1}: nearest is 0
                        [3, 3, 1, 1, 1]])    # no tie: 1 has 3 votes
    assert majority_vote(lab, 5, 4).tolist() == [1, 0, 1]
    assert majority_vote(lab, 4, 4).tolist() == [1, 0, 3]   # row 3: {3:2, 1:2} -> 3 is nearer
    assert majority_vote(lab, 1, 4).tolist() == [2, 0, 3]


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_tie_rule_end_to_end_on_hand_built_points(metric):
    # train points on a ray at angles / radii increasing away from the query; labels [2,1,0,1,0]
    angles = torch.tensor([0.10, 0.20, 0.30, 0.40, 0.50, 2.5, 2.7])
    labels = torch.tensor([2, 1, 0, 1, 0, 0, 0])
    train = torch.stack([torch.cos(angles), torch.sin(angles)], 1) * torch.linspace(1.0, 1.1, 7).unsqueeze(1)
    query = torch.tensor([[1.0, 0.0]])
    p = knn_predict(train, labels, query, ks=(1, 3, 4, 5), metrics=(metric,), weighted_temperature=None,
                    show_progress=False)["knn"][metric]
    assert p[1].item() == 2     # nearest only
    assert p[3].item() == 2     # [2,1,0]: three-way tie, nearest is 2
    assert p[4].item() == 1     # [2,1,0,1]: 1 wins outright
    assert p[5].item() == 1     # [2,1,0,1,0]: tie {0,1}, class 1 owns the nearer neighbour


def test_weighted_vote_matches_independent_formula():
    xtr, ytr, xte, yte = _data(seed=5)
    t = 0.07
    a = xtr.astype(np.float64) / np.linalg.norm(xtr, axis=1, keepdims=True)
    b = xte.astype(np.float64) / np.linalg.norm(xte, axis=1, keepdims=True)
    sim = b @ a.T
    order = np.argsort(-sim, axis=1)
    preds = knn_predict(torch.from_numpy(xtr), torch.from_numpy(ytr), torch.from_numpy(xte), ks=KS,
                        metrics=("cosine",), weighted_temperature=t, show_progress=False)
    for k in KS:
        scores = np.zeros((len(xte), 4))
        for i in range(len(xte)):
            for j in order[i, :k]:
                scores[i, ytr[j]] += math.exp(sim[i, j] / t)
        srt = np.sort(scores, 1)
        clear = (srt[:, -1] - srt[:, -2]) > 1e-4 * srt[:, -1]
        gap = sim[np.arange(len(xte)), order[:, k - 1]] - sim[np.arange(len(xte)), order[:, k]] > 1e-5
        ok = clear & gap
        assert ok.mean() > 0.9
        ours = preds["knn_weighted"]["cosine"][k].numpy()
        np.testing.assert_array_equal(ours[ok], scores.argmax(1)[ok], err_msg=f"k={k}")


def test_chunked_equals_unchunked_and_accuracy_is_mean_of_predictions():
    xtr, ytr, xte, yte = (torch.from_numpy(a) for a in _data(seed=7))
    whole = knn_predict(xtr, ytr, xte, ks=KS, chunk_size=10_000, show_progress=False)
    for cs in (1, 7, 64):
        part = knn_predict(xtr, ytr, xte, ks=KS, chunk_size=cs, show_progress=False)
        for kind in whole:
            for met in whole[kind]:
                for k in whole[kind][met]:
                    assert torch.equal(whole[kind][met][k], part[kind][met][k]), (cs, kind, met, k)
    acc = knn_classify(xtr, ytr, xte, yte, ks=KS, chunk_size=13, show_progress=False)
    assert set(acc) == {"knn", "knn_weighted"}
    assert set(acc["knn"]) == {"cosine", "euclidean"} and set(acc["knn_weighted"]) == {"cosine"}
    for kind in acc:
        for met in acc[kind]:
            assert list(acc[kind][met]) == [str(k) for k in KS]
            for k in KS:
                expect = 100.0 * (whole[kind][met][k] == yte).double().mean().item()
                assert acc[kind][met][str(k)] == pytest.approx(expect)


def test_cosine_is_scale_invariant_but_euclidean_is_not():
    xtr, ytr, xte, yte = (torch.from_numpy(a) for a in _data(seed=9))
    scale = torch.rand(xtr.shape[0], 1) * 10 + 0.1
    a = knn_predict(xtr, ytr, xte, ks=(5,), show_progress=False)
    b = knn_predict(xtr * scale, ytr, xte, ks=(5,), show_progress=False)
    assert torch.equal(a["knn"]["cosine"][5], b["knn"]["cosine"][5])
    assert not torch.equal(a["knn"]["euclidean"][5], b["knn"]["euclidean"][5])


def test_faiss_backend_agrees_with_torch():
    pytest.importorskip("faiss")
    xtr, ytr, xte, yte = (torch.from_numpy(a) for a in _data(seed=11))
    a = knn_classify(xtr, ytr, xte, yte, ks=KS, backend="torch", show_progress=False)
    b = knn_classify(xtr, ytr, xte, yte, ks=KS, backend="faiss", show_progress=False)
    for kind in a:
        for met in a[kind]:
            for k in a[kind][met]:
                assert abs(a[kind][met][k] - b[kind][met][k]) <= 100.0 / len(yte) + 1e-9


@pytest.mark.parametrize("bad", [
    dict(ks=(50,)),                                   # k > number of train samples
    dict(ks=(0,)),
    dict(metrics=("manhattan",)),
    dict(test_f=torch.randn(5, 3)),                   # feature dims differ
    dict(train_y=torch.zeros(20)),                    # float labels
    dict(train_y=torch.zeros(19, dtype=torch.long)),  # wrong length
    dict(backend="annoy"),
])
def test_bad_input_raises_user_error(bad):
    args = dict(train_f=torch.randn(20, 4), train_y=torch.zeros(20, dtype=torch.long), test_f=torch.randn(5, 4),
                test_y=torch.zeros(5, dtype=torch.long), ks=(5,), show_progress=False)
    args.update(bad)
    with pytest.raises(UserError):
        knn_classify(**args)


def test_knn_predictions_are_identical_for_any_block_size():
    from simxir.eval.knn import knn_predict

    g = torch.Generator().manual_seed(3)
    tr, te = torch.randn(300, 24, generator=g), torch.randn(77, 24, generator=g)
    y = torch.randint(0, 5, (300,), generator=g)
    ref = knn_predict(tr, y, te, ks=(1, 5, 21), show_progress=False)
    for chunk in (1, 7, 76, 77, 1000):
        got = knn_predict(tr, y, te, ks=(1, 5, 21), chunk_size=chunk, show_progress=False)
        for kind in ref:
            for met in ref[kind]:
                for k in ref[kind][met]:
                    assert torch.equal(got[kind][met][k], ref[kind][met][k]), (chunk, kind, met, k)


def test_default_block_and_peak_memory_formula():
    from simxir.eval.knn import DEFAULT_BLOCK_ELEMENTS, block_elements, default_chunk, knn_peak_bytes

    assert block_elements(torch.device("cpu")) == DEFAULT_BLOCK_ELEMENTS
    c = default_chunk(1000, 250, 100_000)              # 100 rows -> 3 blocks of 84
    assert c == 84 and -(-250 // c) == 3
    n, q, d = 1_281_167, 50_000, 2048
    assert knn_peak_bytes(n, q, d, 1) == 4 * (n * d + q * d + 2 * n + 2 * n)
