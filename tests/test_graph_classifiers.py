"""The graph classifiers (aevb/evaluation/graph_classifiers.py) against dense computations
written out here: the graph's weights, Laplace learning's harmonic solution, Poisson
learning's limit and its stopping time, Poisson MBO's rounds and its class sizes."""

import numpy as np
import pytest

from aevb.evaluation import graph_classifiers as gc

NEIGHBORS = (30, 20, 10)  # semisupervised.graph_neighbors' default


def _points(n=40, f=3, seed=0):
    return np.random.default_rng(seed).normal(size=(n, f))


def _dense_graph(x, k, d=None):
    d = np.linalg.norm(x[:, None] - x[None], axis=-1) if d is None else d
    w = np.zeros_like(d)
    for i in range(len(x)):
        order = [j for j in np.argsort(d[i], kind="stable") if j != i][:k]
        w[i, order] = np.exp(-4 * d[i, order] ** 2 / d[i, order[-1]] ** 2)
    return (w + w.T) / 2


def test_knn_graph_is_the_dense_formula():
    x = _points()
    w = gc.knn_graph(*gc.nearest_neighbors(x, 7), 5).toarray()
    np.testing.assert_allclose(w, _dense_graph(x, 5), rtol=1e-12, atol=1e-15)
    assert np.all(np.diag(w) == 0)


def test_the_angular_graph_is_the_dense_formula_on_the_angles():
    """metric='angular': the distances are 2 sin(angle / 2), from the cosines here."""
    x = _points() * np.random.default_rng(1).uniform(0.1, 10.0, size=(40, 1))
    unit = gc.metric_features(x, "angular")
    w = gc.knn_graph(*gc.nearest_neighbors(unit, 7), 5).toarray()
    cosines = np.clip(x @ x.T / np.outer(*2 * [np.linalg.norm(x, axis=1)]), -1, 1)
    angles = np.arccos(cosines)
    np.fill_diagonal(angles, 0.0)
    np.testing.assert_allclose(w, _dense_graph(x, 5, 2 * np.sin(angles / 2)), atol=1e-9)
    assert np.all(gc.metric_features(np.zeros((2, 3)), "angular") == 0)
    with pytest.raises(ValueError, match="unknown graph metric 'cosine'"):
        gc.metric_features(x, "cosine")


def test_the_angular_graph_separates_rays_that_the_euclidean_one_mixes():
    """Three classes of points along three rays 10 degrees apart, at lengths from 1 to 1000:
    a point's Euclidean neighbours are the other rays' points of about its length, its
    angular ones are on its own ray. Labels at the far ends only."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 60)
    angles = np.radians(10.0 * y)
    directions = np.stack([np.cos(angles), np.sin(angles), 0 * y, 0 * y], axis=1)
    directions = directions + 0.005 * rng.normal(size=directions.shape)
    x = directions * np.tile(np.geomspace(1, 1000, 60), 3)[:, None]
    labeled, validation = np.array([59, 119, 179]), np.array([58, 118, 178])
    accuracy = {}
    for metric in gc.METRICS:
        selection = gc.fit_and_select("laplace", x, labeled, y[labeled], validation,
                                      y[validation], metric, NEIGHBORS)
        assert selection.metric == metric
        accuracy[metric] = np.mean(selection.predictions == y)
    assert accuracy["angular"] == 1.0 and accuracy["euclidean"] < 0.5, accuracy


def test_laplace_learning_is_the_harmonic_extension():
    x = _points()
    w = _dense_graph(x, 6)
    labeled, one_hot = np.array([0, 5, 9]), np.eye(3)
    u = gc.laplace_learning(gc.sparse.csr_matrix(w), labeled, one_hot)
    free = np.setdiff1d(np.arange(len(x)), labeled)
    laplacian = np.diag(w.sum(1)) - w
    expected = np.linalg.solve(laplacian[np.ix_(free, free)], w[np.ix_(free, labeled)] @ one_hot)
    np.testing.assert_allclose(u[free], expected, atol=1e-5)
    np.testing.assert_array_equal(u[labeled], one_hot)


def test_poisson_learning_converges_to_the_poisson_equation():
    """Run long, U solves L U = B with d^T U = 0 (the iteration keeps d^T U = 0)."""
    x = _points()
    w = _dense_graph(x, 6)
    labeled, one_hot = np.array([1, 2, 30, 31]), np.eye(2)[[0, 0, 1, 1]]
    u, t = gc.poisson_learning(gc.sparse.csr_matrix(w), labeled, one_hot, num_iterations=5000)
    assert t == 5000
    degree = w.sum(1)
    b = np.zeros((len(x), 2))
    b[labeled] = one_hot - 0.5
    system = np.vstack([np.diag(degree) - w, degree[None]])
    expected = np.linalg.lstsq(system, np.vstack([b, np.zeros((1, 2))]), rcond=None)[0]
    np.testing.assert_allclose(u, expected, atol=1e-8)


def test_poisson_learning_stops_when_the_walk_from_the_labels_has_mixed():
    x = _points(n=60)
    w = _dense_graph(x, 5)
    labeled = np.array([3, 40])
    _, t = gc.poisson_learning(gc.sparse.csr_matrix(w), labeled, np.eye(2))
    degree = w.sum(1)
    walk, expected = np.zeros(len(x)), 0
    walk[labeled] = 0.5
    while np.max(np.abs(walk - degree / degree.sum())) > 1 / len(x):
        walk, expected = w @ (walk / degree), expected + 1
    assert t == expected > 0


def test_volume_threshold_holds_the_class_sizes_in_the_order_of_the_scores():
    """Scores whose ratio spreads over e^-7.2 .. e^4.8: plain argmax splits them 60/40, the
    weighted one 50/50, and class 1 takes the nodes of the highest ratio u_1 / u_0."""
    log_ratio = np.linspace(-7.2, 4.8, 1000)
    u = np.stack([np.ones(1000), np.exp(log_ratio)], axis=1)
    assert np.bincount(np.argmax(u, axis=1)).tolist() == [600, 400]
    classes = np.argmax(gc.volume_threshold(u, np.array([0.5, 0.5])), axis=1)
    assert abs(np.mean(classes) - 0.5) < 0.01
    assert np.all(np.diff(classes) >= 0)  # one threshold on the ratio


def test_poisson_mbo_is_poisson_learning_then_heat_steps_and_thresholds():
    """The rounds written out densely: U <- U - dt (L U - B) MBO_STEPS times, dt = 1 / max
    degree, then the volume threshold at the labels' proportions."""
    x = _points(n=60)
    w = _dense_graph(x, 6)
    labeled, one_hot = np.array([0, 1, 30, 31, 50, 51]), np.eye(3)[[0, 0, 1, 1, 2, 2]]
    u, t = gc.poisson_learning(gc.sparse.csr_matrix(w), labeled, one_hot)
    laplacian, b = np.diag(w.sum(1)) - w, np.zeros_like(u)
    b[labeled] = one_hot - one_hot.mean(axis=0)
    for _ in range(gc.MBO_ROUNDS):
        for _ in range(gc.MBO_STEPS):
            u = u - (laplacian @ u - b) / w.sum(1).max()
        u = gc.volume_threshold(u, np.full(3, 1 / 3))
    mbo, iterations = gc.poisson_mbo(gc.sparse.csr_matrix(w), labeled, one_hot)
    np.testing.assert_array_equal(mbo, u)
    assert iterations == t and np.all(mbo.sum(axis=1) == 1)


def _blobs(seed=0, per_class=60, classes=3):
    rng = np.random.default_rng(seed)
    centres = 6.0 * np.eye(classes, 4)
    y = np.repeat(np.arange(classes), per_class)
    return centres[y] + rng.normal(size=(len(y), 4)), y


@pytest.mark.parametrize("kind", gc.KINDS)
def test_one_label_per_class_labels_separated_blobs(kind):
    x, y = _blobs()
    labeled = np.array([0, 60, 120])
    validation = np.array([1, 61, 121, 2, 62, 122])
    selection = gc.fit_and_select(kind, x, labeled, y[labeled], validation, y[validation],
                                  "euclidean", NEIGHBORS)
    assert np.mean(selection.predictions == y) > 0.97
    assert selection.validation_accuracy == 1.0
    # every grid point is perfect on validation: the first (smoothest) one is kept
    assert selection.hparams == gc.grid(kind, NEIGHBORS)[0]
    assert len(selection.candidates) == len(gc.grid(kind, NEIGHBORS))


def test_without_validation_the_defaults_and_a_labelled_validation_node_is_refused():
    x, y = _blobs(per_class=20)
    labeled = np.array([0, 20, 40])
    selection = gc.fit_and_select("poisson", x, labeled, y[labeled], labeled[:0], y[:0],
                                  "euclidean", NEIGHBORS)
    assert selection.hparams == {"num_neighbors": 10} and selection.validation_accuracy is None
    assert selection.iterations > 0 and np.mean(selection.predictions == y) > 0.95
    assert gc.fit_and_select("spreading", x, labeled, y[labeled], labeled[:0], y[:0],
                             "euclidean", NEIGHBORS).hparams == {"alpha": 0.99}
    with pytest.raises(ValueError, match="validation node is also labelled"):
        gc.fit_and_select("laplace", x, labeled, y[labeled], labeled[:1], y[:1], "euclidean",
                          NEIGHBORS)


def test_the_numbers_of_neighbours_are_the_grid_and_a_graph_holds_fewer_than_its_nodes():
    x, y = _blobs(per_class=20)
    labeled, validation = np.array([0, 20, 40]), np.array([1, 21, 41])
    selection = gc.fit_and_select("laplace", x, labeled, y[labeled], validation,
                                  y[validation], "euclidean", (12, 4))
    assert [c[0] for c in selection.candidates] == [{"num_neighbors": 12},
                                                   {"num_neighbors": 4}]
    for bad in [(60,), (5, 0), ()]:
        with pytest.raises(ValueError, match="a graph of 60 nodes takes 1 to 59"):
            gc.fit_and_select("poisson", x, labeled, y[labeled], validation, y[validation],
                              "euclidean", bad)
