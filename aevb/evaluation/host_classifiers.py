"""Classical classifiers on learned features, on the host: the M1 protocol of Kingma,
Rezende, Mohamed & Welling 2014 ("Semi-supervised learning with deep generative models").

A VAE is trained without labels; its posterior means are the features, float [N, F]; a
classifier is fitted on the few labelled examples' features (e.g. 100 = 10 per class).
Its hyperparameters are selected on a separate labelled validation split, never on the
test set: `fit_and_select` takes no test argument.

Every estimator is a scikit-learn Pipeline: a StandardScaler fitted on the labelled
training features only, then the classifier. Each grid in GRIDS is ordered from the
strongest regularisation to the weakest and is scanned with a strict `>`, so a tie in
validation accuracy (common with ~100 validation examples) goes to the simplest model.

- logistic: multinomial LogisticRegression (lbfgs) over C.
- svm: an inductive RBF SVC over C. The paper's M1 SVM is transductive (TSVM: it also
  uses the unlabelled examples' features); this plain SVM is not the same classifier.
- knn: KNeighborsClassifier over n_neighbors, largest (smoothest) first; values larger
  than the number of training examples are dropped.
- mlp: one hidden layer of MLP_HIDDEN ReLU units (adam) over the L2 weight decay alpha,
  trained epoch by epoch with `partial_fit` (an epoch: one pass over the training set in
  minibatches of min(200, N)) and early-stopped on the given validation split: the model
  of the epoch with the best validation accuracy (the first one reaching it) is kept, and
  training stops after PATIENCE epochs without a strict improvement or at MAX_EPOCHS.
  sklearn's own `early_stopping=True` is not used: it would carve its validation
  fraction out of the few labelled training examples.

With an empty validation split (validation size 0) there is nothing to select on: the
DEFAULTS are fitted (the mlp for DEFAULT_MLP_EPOCHS epochs), with no validation accuracy.
Everything is seeded from `seed`, so a call is deterministic.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import warnings
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

KINDS = ("logistic", "mlp", "knn", "svm")

# Per kind, each hyperparameter's values; grid points are their product in this order
# (first hyperparameter outermost), from the strongest regularisation to the weakest.
GRIDS: dict[str, dict[str, tuple[Any, ...]]] = {
    "logistic": {"C": (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)},
    "svm": {"C": (0.1, 1.0, 10.0, 100.0, 1000.0), "gamma": ("scale",)},
    "knn": {"n_neighbors": (25, 15, 9, 5, 3, 1)},
    "mlp": {"alpha": (1.0, 0.1, 1e-2, 1e-3, 1e-4)},
}

# Without a validation split: the hyperparameters fitted (knn: n_neighbors capped at N).
DEFAULTS: dict[str, dict[str, Any]] = {
    "logistic": {"C": 1.0},
    "svm": {"C": 10.0, "gamma": "scale"},
    "knn": {"n_neighbors": 5},
    "mlp": {"alpha": 1e-3},
}

LOGISTIC_MAX_ITER = 2000  # lbfgs iterations: enough to converge on ~50 standardised features
MLP_HIDDEN = (100,)       # hidden layer sizes of the mlp
# mlp epochs. With N <= 200 labelled examples an epoch is a single adam step (learning
# rate 1e-3), so validation accuracy (in steps of 1/M) can sit on a plateau for tens of
# epochs while the model still improves: a patience of 30 stopped 10-class, 100-label
# blobs at epoch ~84 with 0.75 test accuracy, against 0.88 at the epoch-337 optimum.
MAX_EPOCHS = 1000         # most epochs trained per grid point
PATIENCE = 100            # epochs without a strict validation improvement before stopping
DEFAULT_MLP_EPOCHS = 300  # without a validation split: fixed number of epochs


@dataclasses.dataclass
class Selection:
    """A fitted classifier and how its hyperparameters were chosen.

    kind: one of KINDS.
    hparams: the chosen hyperparameters, e.g. {"C": 1.0}.
    validation_accuracy: the chosen model's accuracy on the validation split (None without).
    candidates: every grid point and its validation accuracy, in grid order ([] without a
      validation split).
    estimator: the fitted Pipeline (StandardScaler, classifier) of the chosen hparams.
    epochs: mlp only, the epoch (1-based) whose model was kept.
    """

    kind: str
    hparams: dict[str, Any]
    validation_accuracy: float | None
    candidates: list[tuple[dict[str, Any], float]]
    estimator: Any
    epochs: int | None = None


def fit_and_select(kind: str, train_x: np.ndarray, train_y: np.ndarray,
                   val_x: np.ndarray, val_y: np.ndarray, seed: int) -> Selection:
    """Fits a `kind` classifier on train_x [N, F] / train_y [N], its hyperparameters chosen
    on val_x [M, F] / val_y [M].

    Every point of GRIDS[kind] is fitted and scored on the validation split; the first one
    with the highest validation accuracy is kept (ties go to the stronger regularisation).
    With M = 0 the DEFAULTS are fitted instead. Labels are any hashable classes; the
    classifier knows the classes present in train_y.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown host classifier kind {kind!r}; expected one of {KINDS}")
    train_x, val_x = np.asarray(train_x), np.asarray(val_x)
    train_y, val_y = np.asarray(train_y), np.asarray(val_y)
    if train_x.ndim != 2 or len(train_x) != len(train_y) or len(train_x) == 0:
        raise ValueError(f"need features [N, F] and labels [N] with N > 0, got "
                         f"{train_x.shape} and {train_y.shape}")
    if len(val_x) != len(val_y):
        raise ValueError(f"validation features {val_x.shape} and labels {val_y.shape} differ")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if len(val_x) == 0:
            return _fit_defaults(kind, train_x, train_y, seed)
        best: tuple[dict[str, Any], float, Pipeline, int | None] | None = None
        candidates = []
        for hparams in _grid_points(kind, len(train_x)):
            estimator, acc, epochs = _fit_point(kind, hparams, train_x, train_y, val_x,
                                                val_y, seed)
            candidates.append((hparams, acc))
            if best is None or acc > best[1]:
                best = (hparams, acc, estimator, epochs)
    hparams, acc, estimator, epochs = best
    return Selection(kind=kind, hparams=dict(hparams), validation_accuracy=acc,
                     candidates=candidates, estimator=estimator, epochs=epochs)


def predict(selection: Selection, x: np.ndarray) -> np.ndarray:
    """The selected classifier's classes [N] for features x [N, F]."""
    return selection.estimator.predict(np.asarray(x))


def accuracy(selection: Selection, x: np.ndarray, y: np.ndarray) -> float:
    """Fraction of x [N, F] (N > 0) whose predicted class is the label y [N]."""
    y = np.asarray(y)
    if len(y) == 0:
        raise ValueError("accuracy of an empty split is undefined")
    return _accuracy(predict(selection, x), y)


# ----------------------------------------------------------------------------- internals

def _accuracy(predicted: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(predicted == y))


def _grid_points(kind: str, num_train: int) -> list[dict[str, Any]]:
    """GRIDS[kind] expanded to its hyperparameter dicts, in grid order (knn: k <= N)."""
    names = list(GRIDS[kind])
    points = [dict(zip(names, values))
              for values in itertools.product(*(GRIDS[kind][n] for n in names))]
    if kind == "knn":
        points = [p for p in points if p["n_neighbors"] <= num_train]
    return points


def _classifier(kind: str, hparams: dict[str, Any], seed: int) -> Any:
    """The unfitted classifier of a grid point (the pipeline's last step)."""
    if kind == "logistic":
        return LogisticRegression(C=hparams["C"], solver="lbfgs",
                                  max_iter=LOGISTIC_MAX_ITER, random_state=seed)
    if kind == "svm":
        return SVC(C=hparams["C"], kernel="rbf", gamma=hparams["gamma"], random_state=seed)
    if kind == "knn":
        return KNeighborsClassifier(n_neighbors=hparams["n_neighbors"])
    return MLPClassifier(hidden_layer_sizes=MLP_HIDDEN, activation="relu", solver="adam",
                         alpha=hparams["alpha"], random_state=seed)


def _fit_point(kind: str, hparams: dict[str, Any], train_x: np.ndarray,
               train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray, seed: int
               ) -> tuple[Pipeline, float, int | None]:
    """(fitted pipeline, its validation accuracy, mlp's kept epoch or None) of one point."""
    if kind == "mlp":
        return _mlp_early_stopped(hparams, train_x, train_y, val_x, val_y, seed)
    pipeline = Pipeline([("scale", StandardScaler()),
                         ("classifier", _classifier(kind, hparams, seed))])
    pipeline.fit(train_x, train_y)
    return pipeline, _accuracy(pipeline.predict(val_x), val_y), None


def _mlp_early_stopped(hparams: dict[str, Any], train_x: np.ndarray, train_y: np.ndarray,
                       val_x: np.ndarray, val_y: np.ndarray, seed: int
                       ) -> tuple[Pipeline, float, int]:
    """The mlp trained epoch by epoch, keeping a copy of the epoch with the best validation
    accuracy (strict improvement) and stopping PATIENCE epochs after it or at MAX_EPOCHS.

    Returns (pipeline of the kept model, its validation accuracy, its 1-based epoch).
    """
    scaler = StandardScaler().fit(train_x)
    x, v = scaler.transform(train_x), scaler.transform(val_x)
    classes = np.unique(train_y)
    mlp = _classifier("mlp", hparams, seed)
    best_acc, best_epoch, best_model = -1.0, 0, None
    for epoch in range(1, MAX_EPOCHS + 1):
        mlp.partial_fit(x, train_y, classes=classes)
        acc = _accuracy(mlp.predict(v), val_y)
        if acc > best_acc:
            best_acc, best_epoch, best_model = acc, epoch, copy.deepcopy(mlp)
        elif epoch - best_epoch >= PATIENCE:
            break
    return Pipeline([("scale", scaler), ("classifier", best_model)]), best_acc, best_epoch


def _fit_defaults(kind: str, train_x: np.ndarray, train_y: np.ndarray, seed: int
                  ) -> Selection:
    """The DEFAULTS of `kind` fitted on the whole training split (no validation split)."""
    hparams = dict(DEFAULTS[kind])
    epochs = None
    if kind == "knn":
        hparams["n_neighbors"] = min(hparams["n_neighbors"], len(train_x))
    if kind == "mlp":
        scaler = StandardScaler().fit(train_x)
        x = scaler.transform(train_x)
        classes = np.unique(train_y)
        mlp = _classifier(kind, hparams, seed)
        for _ in range(DEFAULT_MLP_EPOCHS):
            mlp.partial_fit(x, train_y, classes=classes)
        estimator = Pipeline([("scale", scaler), ("classifier", mlp)])
        epochs = DEFAULT_MLP_EPOCHS
    else:
        estimator = Pipeline([("scale", StandardScaler()),
                              ("classifier", _classifier(kind, hparams, seed))])
        estimator.fit(train_x, train_y)
    return Selection(kind=kind, hparams=hparams, validation_accuracy=None, candidates=[],
                     estimator=estimator, epochs=epochs)
