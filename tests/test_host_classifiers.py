"""Tests for aevb.host_classifiers.

Every expected value is computed independently: each grid point is refitted as a plain
scikit-learn pipeline (or, for the mlp, retrained epoch by epoch with partial_fit) and
scored with numpy; grids and defaults are written out here literally.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from aevb.evaluation import host_classifiers as hc

SEED = 3
DIM = 16

EXPECTED_GRIDS = {
    "logistic": [{"C": c} for c in (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)],
    "svm": [{"C": c, "gamma": "scale"} for c in (0.1, 1.0, 10.0, 100.0, 1000.0)],
    "knn": [{"n_neighbors": k} for k in (25, 15, 9, 5, 3, 1)],
    "mlp": [{"alpha": a} for a in (1.0, 0.1, 1e-2, 1e-3, 1e-4)],
}


def blobs(seed: int, spread: float, labels: tuple[int, ...], sizes: tuple[int, ...]
          ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Splits of float32 Gaussian blobs [n, DIM] (unit noise, centres N(0, spread^2))."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(labels), DIM)) * spread
    splits = []
    for n in sizes:
        idx = np.arange(n) % len(labels)  # balanced classes
        rng.shuffle(idx)
        x = centres[idx] + rng.normal(size=(n, DIM))
        splits.append((x.astype(np.float32), np.asarray(labels)[idx]))
    return splits


@pytest.fixture(scope="module")
def moderate():
    """Overlapping blobs: 4 classes, 40 train / 40 validation / 200 test."""
    return blobs(0, 0.8, (0, 1, 2, 3), (40, 40, 200))


@pytest.fixture(scope="module")
def separated():
    """Well-separated blobs, labels not 0..K-1: 4 classes, 40 / 40 / 200."""
    return blobs(1, 3.0, (2, 5, 7, 11), (40, 40, 200))


@pytest.fixture(scope="module")
def mlp_moderate(moderate):
    (tx, ty), (vx, vy), _ = moderate
    return hc.fit_and_select("mlp", tx, ty, vx, vy, SEED)


def plain_pipeline(kind: str, hparams: dict, seed: int):
    if kind == "logistic":
        clf = LogisticRegression(C=hparams["C"], max_iter=2000, random_state=seed)
    elif kind == "svm":
        clf = SVC(C=hparams["C"], kernel="rbf", gamma=hparams["gamma"])
    else:
        clf = KNeighborsClassifier(n_neighbors=hparams["n_neighbors"])
    return make_pipeline(StandardScaler(), clf)


def mlp_curve(alpha: float, train, val, test_x, epochs: int, seed: int, at: int):
    """Validation accuracies [epochs] of an mlp trained epoch by epoch with partial_fit on
    standardised features, and its predictions on test_x after epoch `at` (1-based)."""
    (tx, ty), (vx, vy) = train, val
    scaler = StandardScaler().fit(tx)
    x, v = scaler.transform(tx), scaler.transform(vx)
    mlp = MLPClassifier(hidden_layer_sizes=(100,), activation="relu", solver="adam",
                        alpha=alpha, random_state=seed)
    accs, preds = [], None
    for epoch in range(1, epochs + 1):
        mlp.partial_fit(x, ty, classes=np.unique(ty))
        accs.append(np.count_nonzero(mlp.predict(v) == vy) / len(vy))
        if epoch == at:
            preds = mlp.predict(scaler.transform(test_x))
    return np.array(accs), preds


def test_signature_has_no_test_split():
    params = list(inspect.signature(hc.fit_and_select).parameters)
    assert params == ["kind", "train_x", "train_y", "val_x", "val_y", "seed"]
    assert hc.KINDS == ("logistic", "mlp", "knn", "svm")


@pytest.mark.parametrize("kind", ["logistic", "svm", "knn"])
def test_candidates_match_independent_refits(kind, moderate):
    (tx, ty), (vx, vy), _ = moderate
    sel = hc.fit_and_select(kind, tx, ty, vx, vy, SEED)
    assert sel.kind == kind and sel.epochs is None
    assert [h for h, _ in sel.candidates] == EXPECTED_GRIDS[kind]
    expected = [np.count_nonzero(plain_pipeline(kind, h, SEED).fit(tx, ty).predict(vx) == vy)
                / len(vy) for h in EXPECTED_GRIDS[kind]]
    assert [a for _, a in sel.candidates] == expected
    first_best = int(np.argmax(expected))  # argmax: the first maximum
    assert sel.validation_accuracy == max(expected)
    assert sel.hparams == EXPECTED_GRIDS[kind][first_best]
    assert len(set(expected)) > 1  # the problem is one where the choice matters


def test_mlp_selects_first_best_point(mlp_moderate):
    sel = mlp_moderate
    assert [h for h, _ in sel.candidates] == EXPECTED_GRIDS["mlp"]
    accs = [a for _, a in sel.candidates]
    assert sel.validation_accuracy == max(accs)
    assert sel.hparams == EXPECTED_GRIDS["mlp"][int(np.argmax(accs))]


def test_mlp_early_stopping_keeps_best_epoch(moderate, mlp_moderate):
    sel = mlp_moderate
    train, val, test = moderate
    assert 1 <= sel.epochs <= hc.MAX_EPOCHS
    horizon = min(sel.epochs + hc.PATIENCE, hc.MAX_EPOCHS)
    accs, preds = mlp_curve(sel.hparams["alpha"], train, val, test[0], horizon, SEED,
                            at=sel.epochs)
    # The kept epoch is the first maximum of the curve up to where training stopped.
    assert sel.validation_accuracy == accs.max()
    assert sel.epochs == int(np.argmax(accs)) + 1
    np.testing.assert_array_equal(hc.predict(sel, test[0]), preds)
    # The kept model scores its recorded validation accuracy.
    assert hc.accuracy(sel, *val) == sel.validation_accuracy


def test_mlp_stops_after_patience(moderate, monkeypatch):
    # Count the epochs each grid point trains; with a short patience, training must stop
    # exactly PATIENCE epochs after the first maximum of its (independent) curve.
    monkeypatch.setattr(hc, "PATIENCE", 5)
    monkeypatch.setattr(hc, "MAX_EPOCHS", 200)
    trained: dict[float, int] = {}

    class Counting(MLPClassifier):
        def partial_fit(self, x, y, classes=None):
            trained[self.alpha] = trained.get(self.alpha, 0) + 1
            return super().partial_fit(x, y, classes=classes)

    monkeypatch.setattr(hc, "MLPClassifier", Counting)
    train, val, test = moderate
    sel = hc.fit_and_select("mlp", *train, *val, SEED)
    for hparams, acc in sel.candidates:
        count = trained[hparams["alpha"]]
        accs, _ = mlp_curve(hparams["alpha"], train, val, test[0], count, SEED, at=0)
        kept = int(np.argmax(accs)) + 1
        assert acc == accs.max()
        assert count == min(kept + 5, 200)
    assert any(count < 200 for count in trained.values())  # early stopping happened


def test_ties_go_to_strongest_regularisation(separated):
    (tx, ty), (vx, vy), _ = separated
    sel = hc.fit_and_select("logistic", tx, ty, vx, vy, SEED)
    accs = [a for _, a in sel.candidates]
    assert accs.count(max(accs)) >= 2  # a tie exists
    assert sel.hparams == {"C": EXPECTED_GRIDS["logistic"][accs.index(max(accs))]["C"]}
    assert sel.hparams["C"] < 1000.0


@pytest.fixture
def short_mlp(monkeypatch):
    """A shorter mlp schedule for the tests that are not about it (runtime)."""
    monkeypatch.setattr(hc, "PATIENCE", 10)
    monkeypatch.setattr(hc, "MAX_EPOCHS", 60)


@pytest.mark.parametrize("kind", hc.KINDS)
def test_separated_blobs_generalise(kind, separated, short_mlp):
    (tx, ty), (vx, vy), (sx, sy) = separated
    sel = hc.fit_and_select(kind, tx, ty, vx, vy, SEED)
    pred = hc.predict(sel, sx)
    assert pred.shape == sy.shape
    assert set(np.unique(pred)) <= {2, 5, 7, 11}
    test_acc = np.count_nonzero(pred == sy) / len(sy)
    assert test_acc > 0.9
    assert hc.accuracy(sel, sx, sy) == test_acc


@pytest.mark.parametrize("kind", hc.KINDS)
def test_noise_labels_near_chance(kind, short_mlp):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(700, DIM)).astype(np.float32)
    y = rng.integers(0, 4, size=700)  # labels independent of the features: chance 0.25
    sel = hc.fit_and_select(kind, x[:100], y[:100], x[100:500], y[100:500], SEED)
    # The maximum over the grid is optimistic, but by a few standard errors (0.022) only.
    assert 0.15 < sel.validation_accuracy < 0.35
    assert hc.accuracy(sel, x[500:], y[500:]) < 0.4


def test_knn_prefers_one_neighbour_on_interleaved_clusters():
    # 40 tight clusters far apart, labels alternating at random: one training and one
    # validation point per cluster, so only the nearest neighbour carries the label.
    rng = np.random.default_rng(11)
    centres = rng.normal(size=(40, DIM)) * 3.0
    labels = rng.permutation(np.arange(40) % 2)
    tx = centres + 0.01 * rng.normal(size=centres.shape)
    vx = centres + 0.01 * rng.normal(size=centres.shape)
    sel = hc.fit_and_select("knn", tx, labels, vx, labels, SEED)
    assert sel.hparams == {"n_neighbors": 1}
    assert sel.validation_accuracy == 1.0
    assert {h["n_neighbors"]: a for h, a in sel.candidates}[25] < 0.8


def test_knn_prefers_many_neighbours_on_noisy_labels():
    # Two overlapping classes in 2 dimensions with 30% of the labels flipped: the
    # nearest neighbour copies the noise, the widest vote averages it out.
    rng = np.random.default_rng(12)
    n = 400
    y = np.arange(n) % 2
    x = rng.normal(size=(n, 2))
    x[:, 0] += 3.0 * y
    flip = rng.random(n) < 0.3
    noisy = np.where(flip, 1 - y, y)
    sel = hc.fit_and_select("knn", x[:200], noisy[:200], x[200:], noisy[200:], SEED)
    accs = {h["n_neighbors"]: a for h, a in sel.candidates}
    assert sel.hparams == {"n_neighbors": 25}
    assert accs[1] < sel.validation_accuracy - 0.05


def test_knn_grid_drops_k_above_train_size():
    (tx, ty), (vx, vy), _ = blobs(4, 3.0, (0, 1), (15, 10, 0))
    sel = hc.fit_and_select("knn", tx, ty, vx, vy, SEED)
    assert [h["n_neighbors"] for h, _ in sel.candidates] == [15, 9, 5, 3, 1]


@pytest.mark.parametrize("kind", hc.KINDS)
def test_empty_validation_uses_defaults(kind, moderate, monkeypatch):
    assert hc.DEFAULT_MLP_EPOCHS == 300
    monkeypatch.setattr(hc, "DEFAULT_MLP_EPOCHS", 40)  # runtime: the constant is honoured
    (tx, ty), (vx, vy), (sx, _) = moderate
    sel = hc.fit_and_select(kind, tx, ty, vx[:0], vy[:0], SEED)
    assert sel.validation_accuracy is None and sel.candidates == []
    expected = {"logistic": {"C": 1.0}, "svm": {"C": 10.0, "gamma": "scale"},
                "knn": {"n_neighbors": 5}, "mlp": {"alpha": 1e-3}}[kind]
    assert sel.hparams == expected
    if kind == "mlp":
        assert sel.epochs == 40
        _, reference = mlp_curve(1e-3, (tx, ty), (vx[:1], vy[:1]), sx, sel.epochs, SEED,
                                 at=sel.epochs)
    else:
        assert sel.epochs is None
        reference = plain_pipeline(kind, expected, SEED).fit(tx, ty).predict(sx)
    np.testing.assert_array_equal(hc.predict(sel, sx), reference)


def test_empty_validation_knn_caps_neighbours():
    (tx, ty), _ = blobs(5, 3.0, (0, 1), (3, 0))
    sel = hc.fit_and_select("knn", tx, ty, tx[:0], ty[:0], SEED)
    assert sel.hparams == {"n_neighbors": 3}


def test_deterministic_given_seed(moderate, monkeypatch):
    monkeypatch.setattr(hc, "MAX_EPOCHS", 5)  # determinism needs no long training
    (tx, ty), (vx, vy), (sx, _) = moderate
    first, again = (hc.fit_and_select("mlp", tx, ty, vx, vy, SEED) for _ in range(2))
    assert again.hparams == first.hparams and again.epochs == first.epochs
    assert again.candidates == first.candidates
    np.testing.assert_array_equal(hc.predict(again, sx), hc.predict(first, sx))
    for a, b in zip(again.estimator[-1].coefs_, first.estimator[-1].coefs_):
        np.testing.assert_array_equal(a, b)
    other = hc.fit_and_select("mlp", tx, ty, vx, vy, SEED + 1)  # the seed is used
    assert not np.array_equal(other.estimator[-1].coefs_[0], first.estimator[-1].coefs_[0])
    # (logistic: its refits already match independent ones exactly, above.)
    for kind in ("svm", "knn"):
        first, second = (hc.fit_and_select(kind, tx, ty, vx, vy, SEED) for _ in range(2))
        np.testing.assert_array_equal(hc.predict(first, sx), hc.predict(second, sx))


def test_unknown_kind_raises(moderate):
    (tx, ty), (vx, vy), _ = moderate
    with pytest.raises(ValueError, match="logistic"):
        hc.fit_and_select("tsvm", tx, ty, vx, vy, SEED)
