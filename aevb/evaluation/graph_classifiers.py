"""Graph-based semi-supervised classifiers on learned features, on the host: labels spread
over a k-nearest-neighbour graph of every example, labelled or not (transductive).

The features are float [N, F] for every node of the graph: the labelled examples, the
unlabelled training examples, and the validation and test examples to predict (they enter
only as unlabelled nodes: their labels are never read here except to score the validation
split). Each method returns a class for every node.

- The graph (`knn_graph`), as Calder et al. (2020) build theirs: each node is joined to its
  k nearest neighbours (Euclidean) with weight w_ij = exp(-4 |x_i - x_j|^2 / d_k(x_i)^2),
  d_k(x_i) the distance to its k-th neighbour; then W = (W + W^T) / 2, no self loops.
  The metric (`METRICS`, `metric_features`): `euclidean`, theirs for VAE features, or
  `angular`, the same on the features scaled to unit length, |x_i - x_j| = 2 sin(angle / 2):
  neighbours by the angle between the features, not their lengths (their code offers it,
  annoy's "angular", for other learned features).
- poisson: Poisson learning (Calder, Cook, Thorpe & Slepcev, ICML 2020, Algorithm 1). The
  labels are sources of the graph Poisson equation L U = B, L = D - W, B_j = y_j - mean(y)
  (one-hot rows of the labelled nodes, zero elsewhere), solved by the iteration
  U <- U + D^-1 (B - L U) from U = 0, stopped as theirs once a random walk started at the
  labelled nodes has mixed: max_i |p_t(i) - d_i / sum(d)| <= 1 / N, p_{t+1} = W D^-1 p_t.
  Class: argmax_c U_ic (labels are balanced here, so their class-prior reweighting is 1).
- poisson_mbo: Poisson MBO (the same paper, Algorithm 2), Poisson learning refined by a
  graph-cut step with the class sizes held to the labels' class proportions: from U = mu x
  Poisson learning, MBO_ROUNDS rounds of MBO_STEPS heat steps U <- U - dt (L U - mu B),
  dt = 1 / max degree, then the volume-constrained threshold (`volume_threshold`): each
  node to the class of its largest s_c U_ic, the weights s in [0.5, 2] moved until the
  class sizes match. mu = 1, 40 steps and 20 rounds, as theirs. Their sizes are the true
  classes'; here the labels' proportions stand in for them (equal under balanced labels,
  as Fashion-MNIST's classes are).
- laplace: Laplace learning (Zhu, Ghahramani & Lafferty, ICML 2003): U harmonic on the
  unlabelled nodes (L U = 0 there) and equal to the one-hot labels on the labelled ones;
  L_uu U_u = W_ul Y by conjugate gradients, a Jacobi preconditioner.
- spreading: label spreading (Zhou et al., NIPS 2004), scikit-learn's LabelSpreading on its
  own k-nearest-neighbour graph (k the last of `neighbors`), its clamping factor alpha
  selected.

Hyperparameters are selected on the validation nodes' accuracy (as `host_classifiers`:
each grid runs from the strongest smoothing to the weakest, ties go to the first): the
number of neighbours for poisson, poisson_mbo and laplace (`neighbors`: the config's
`semisupervised.graph_neighbors`, (30, 20, 10) by default), alpha for spreading
(SPREADING_ALPHAS). Without validation nodes: the last
number of neighbours (10 by default, Calder et al.'s graph) and alpha 0.99. Nodes of a
connected component that holds no label get no signal; their U is 0 and their class is
class 0.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np
from scipy import sparse
from scipy.sparse import linalg

KINDS = ("poisson", "poisson_mbo", "laplace", "spreading")
METRICS = ("euclidean", "angular")
SPREADING_ALPHAS = (0.99, 0.9, 0.5, 0.2)  # label spreading's alpha; the first without
#                                           validation nodes
MAX_ITERATIONS = 10_000  # Poisson learning's iterations at most, whatever the mixing time
CG_TOLERANCE = 1e-6      # Laplace learning: conjugate gradients' relative residual
MBO_ROUNDS, MBO_STEPS = 20, 40  # Poisson MBO: thresholds, and heat steps before each
VOLUME_ITERATIONS, VOLUME_STEP, VOLUME_BOUNDS = 100, 10.0, (0.5, 2.0)  # the class weights'
#                                 ascent in `volume_threshold`, as Calder et al.'s code


@dataclasses.dataclass
class GraphSelection:
    """The chosen method's classes for every node and how they were chosen.

    kind: one of KINDS. hparams: the chosen hyperparameters. predictions: int [N], a class
    for every node. validation_accuracy: on the validation nodes (None without them).
    candidates: every grid point and its validation accuracy, in grid order.
    iterations: poisson and poisson_mbo, Poisson learning's iterations on the chosen graph.
    metric: the graph's distance, one of METRICS.
    """

    kind: str
    hparams: dict[str, Any]
    predictions: np.ndarray
    validation_accuracy: float | None
    candidates: list[tuple[dict[str, Any], float]]
    iterations: int | None = None
    metric: str = "euclidean"


def fit_and_select(kind: str, features: np.ndarray, labeled: np.ndarray,
                   labels: np.ndarray, validation: np.ndarray,
                   validation_labels: np.ndarray, metric: str,
                   neighbors: tuple[int, ...]) -> GraphSelection:
    """Classes for every node of features [N, F] from the labels [L] of the nodes `labeled`
    [L], the hyperparameters (`grid`) chosen on the accuracy at the nodes `validation` [M]
    (their labels validation_labels [M]); with M = 0, `grid`'s default. The graph's
    distance is `metric` (one of METRICS), its numbers of neighbours `neighbors`, each
    below N. Classes are 0 .. C-1."""
    if kind not in KINDS:
        raise ValueError(f"unknown graph classifier kind {kind!r}; expected one of {KINDS}")
    features = metric_features(np.asarray(features, np.float64), metric)
    labeled, labels = np.asarray(labeled), np.asarray(labels)
    validation, validation_labels = np.asarray(validation), np.asarray(validation_labels)
    if features.ndim != 2 or len(labeled) != len(labels) or len(labeled) == 0:
        raise ValueError(f"need features [N, F] and labels of L > 0 nodes, got "
                         f"{features.shape}, {labeled.shape} and {labels.shape}")
    if np.intersect1d(labeled, validation).size:
        raise ValueError("a validation node is also labelled")
    if not neighbors or not 0 < min(neighbors) <= max(neighbors) < len(features):
        raise ValueError(f"numbers of neighbours {neighbors}: a graph of {len(features)} "
                         f"nodes takes 1 to {len(features) - 1}")
    points = grid(kind, neighbors)
    if len(validation) == 0:  # the default: the fewest neighbours, or alpha 0.99
        points = points[:1] if kind == "spreading" else points[-1:]
    searched = None
    if kind != "spreading":
        searched = nearest_neighbors(features, max(p["num_neighbors"] for p in points))
    best, candidates = None, []
    for hparams in points:
        predictions, iterations = _fit_point(kind, hparams, features, searched, labeled,
                                             labels, neighbors[-1])
        acc = (float(np.mean(predictions[validation] == validation_labels))
               if len(validation) else None)
        candidates.append((dict(hparams), acc))
        if best is None or acc > best.validation_accuracy:
            best = GraphSelection(kind, dict(hparams), predictions, acc, candidates,
                                  iterations, metric)
    return best if len(validation) else dataclasses.replace(best, candidates=[])


def grid(kind: str, neighbors: tuple[int, ...]) -> list[dict[str, Any]]:
    """The hyperparameters `fit_and_select` tries, in order: alpha for spreading, else the
    number of neighbours. Without validation nodes it takes the last number of
    neighbours, or spreading's first alpha."""
    if kind == "spreading":
        return [{"alpha": alpha} for alpha in SPREADING_ALPHAS]
    return [{"num_neighbors": k} for k in neighbors]


def metric_features(features: np.ndarray, metric: str) -> np.ndarray:
    """The features [N, F] whose Euclidean distances are `metric`'s: themselves for
    euclidean; for angular, each row scaled to unit length (a zero row stays zero)."""
    if metric not in METRICS:
        raise ValueError(f"unknown graph metric {metric!r}; expected one of {METRICS}")
    if metric == "euclidean":
        return features
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.where(norms > 0, norms, 1.0)


def nearest_neighbors(features: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices int [N, k], distances [N, k]) of each node's k nearest other nodes, nearest
    first (Euclidean; exact search)."""
    from sklearn.neighbors import NearestNeighbors

    # kneighbors() without a query: each point's neighbours other than itself
    distances, indices = NearestNeighbors(n_neighbors=k).fit(features).kneighbors()
    return indices, distances


def knn_graph(indices: np.ndarray, distances: np.ndarray, k: int) -> sparse.csr_matrix:
    """The symmetric weight matrix W [N, N] of the k-nearest-neighbour graph, from the first
    k columns of `nearest_neighbors`' output: w_ij = exp(-4 d_ij^2 / d_k(x_i)^2), then
    (W + W^T) / 2, zero diagonal."""
    indices, distances = indices[:, :k], distances[:, :k]
    n = len(indices)
    scale = np.maximum(distances[:, -1:] ** 2, np.finfo(np.float64).tiny)
    weights = np.exp(-4.0 * distances ** 2 / scale)
    w = sparse.csr_matrix((weights.ravel(), (np.repeat(np.arange(n), k), indices.ravel())),
                          shape=(n, n))
    w = ((w + w.T) / 2).tocsr()
    w.setdiag(0)
    w.eliminate_zeros()
    return w


def poisson_learning(w: sparse.csr_matrix, labeled: np.ndarray, one_hot: np.ndarray,
                     num_iterations: int | None = None) -> tuple[np.ndarray, int]:
    """(U [N, C], iterations run) of Poisson learning on the graph W [N, N] from the
    one-hot labels [L, C] of the nodes `labeled` [L]: `num_iterations`, or as many as the
    random walk from the labelled nodes needs to mix (module docstring), at most
    MAX_ITERATIONS."""
    n = w.shape[0]
    degree = np.asarray(w.sum(axis=1)).ravel()
    inverse = np.divide(1.0, degree, out=np.zeros(n), where=degree > 0)
    source = poisson_source(n, labeled, one_hot)
    walk_step = w @ sparse.diags(inverse)            # p <- W D^-1 p
    smooth = sparse.diags(inverse) @ w               # U <- D^-1 B + D^-1 W U
    scaled_source = source * inverse[:, None]
    walk = np.zeros(n)
    walk[labeled] = 1.0 / len(labeled)
    stationary = degree / degree.sum()
    u, t = np.zeros_like(source), 0
    limit = MAX_ITERATIONS if num_iterations is None else num_iterations
    while t < limit and (num_iterations is not None
                         or np.max(np.abs(walk - stationary)) > 1.0 / n):
        u = scaled_source + smooth @ u
        walk = walk_step @ walk
        t += 1
    return u, t


def poisson_source(n: int, labeled: np.ndarray, one_hot: np.ndarray) -> np.ndarray:
    """B [n, C] of the graph Poisson equation: y_j - mean(y) at the labelled nodes [L] (their
    one-hot labels [L, C]), zero elsewhere."""
    source = np.zeros((n, one_hot.shape[1]))
    source[labeled] = one_hot - one_hot.mean(axis=0)
    return source


def poisson_mbo(w: sparse.csr_matrix, labeled: np.ndarray, one_hot: np.ndarray,
                mu: float = 1.0) -> tuple[np.ndarray, int]:
    """(U [N, C] one-hot, Poisson learning's iterations) of Poisson MBO on the graph W
    [N, N] from the one-hot labels [L, C] of the nodes `labeled` [L], the class sizes held
    to the labels' proportions (module docstring)."""
    u, iterations = poisson_learning(w, labeled, one_hot)
    u = mu * u
    degree = np.asarray(w.sum(axis=1)).ravel()
    dt = 1.0 / degree.max()
    source = poisson_source(len(u), labeled, one_hot)
    heat = (sparse.identity(w.shape[0], format="csr")
            - dt * (sparse.diags(degree) - w)).tocsr()     # I - dt L
    priors = one_hot.mean(axis=0)
    for _ in range(MBO_ROUNDS):
        for _ in range(MBO_STEPS):
            u = heat @ u + (mu * dt) * source
        u = volume_threshold(u, priors)
    return u, iterations


def volume_threshold(u: np.ndarray, priors: np.ndarray) -> np.ndarray:
    """One-hot [N, C]: each node to the class c of its largest s_c u_ic, the weights s [C]
    raised for classes below their share priors [C] of the nodes and lowered for those
    above (VOLUME_ITERATIONS steps of VOLUME_STEP x (prior - share), kept in
    VOLUME_BOUNDS), from s = 1."""
    s = np.ones(u.shape[1])
    for _ in range(VOLUME_ITERATIONS):
        share = np.bincount(np.argmax(u * s, axis=1), minlength=u.shape[1]) / len(u)
        s = np.clip(s + VOLUME_STEP * (priors - share), *VOLUME_BOUNDS)
    return np.eye(u.shape[1])[np.argmax(u * s, axis=1)]


def laplace_learning(w: sparse.csr_matrix, labeled: np.ndarray, one_hot: np.ndarray
                     ) -> np.ndarray:
    """U [N, C] of Laplace learning on the graph W [N, N]: one_hot [L, C] on the nodes
    `labeled` [L], harmonic elsewhere (conjugate gradients per class)."""
    n = w.shape[0]
    free = np.setdiff1d(np.arange(n), labeled)
    degree = np.asarray(w.sum(axis=1)).ravel()
    laplacian = (sparse.diags(degree) - w).tocsr()[free][:, free]
    rhs = w.tocsr()[free][:, labeled] @ one_hot
    d = degree[free]
    preconditioner = sparse.diags(np.divide(1.0, d, out=np.ones_like(d), where=d > 0))
    u = np.zeros((n, one_hot.shape[1]))
    u[labeled] = one_hot
    for c in range(one_hot.shape[1]):
        solution, _ = linalg.cg(laplacian, rhs[:, c], rtol=CG_TOLERANCE,
                                M=preconditioner, maxiter=10 * len(free))
        u[free, c] = solution
    return u


# ----------------------------------------------------------------------------- internals

def _fit_point(kind: str, hparams: dict[str, Any], features: np.ndarray, neighbors,
               labeled: np.ndarray, labels: np.ndarray, spreading_neighbors: int
               ) -> tuple[np.ndarray, int | None]:
    """(classes int [N], poisson's iterations or None) of one grid point."""
    num_classes = int(labels.max()) + 1
    if kind == "spreading":
        from sklearn.semi_supervised import LabelSpreading

        targets = np.full(len(features), -1)
        targets[labeled] = labels
        model = LabelSpreading(kernel="knn", n_neighbors=spreading_neighbors,
                               alpha=hparams["alpha"], max_iter=1000)
        with warnings.catch_warnings():  # its convergence warning: the iterations cap
            warnings.simplefilter("ignore")
            model.fit(features, targets)
        return np.asarray(model.transduction_), None
    w = knn_graph(*neighbors, hparams["num_neighbors"])
    one_hot = np.eye(num_classes)[labels]
    if kind == "poisson":
        u, iterations = poisson_learning(w, labeled, one_hot)
    elif kind == "poisson_mbo":
        u, iterations = poisson_mbo(w, labeled, one_hot)
    else:
        u, iterations = laplace_learning(w, labeled, one_hot), None
    return np.argmax(u, axis=1), iterations
