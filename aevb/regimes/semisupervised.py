"""Classification with few labels by the protocols of Kingma, Rezende, Mohamed & Welling
(2014), "Semi-supervised learning with deep generative models" (`task=semisupervised`).

The features a classifier sees (`semisupervised.features`):
  m1      the posterior means of a VAE of `model.*` (the authors' M1: 2 x 500 softplus, 50
          latents), trained first on the training images (without the validation ones
          under `labels.hold_out`), in `<workdir>/m1` (an ordinary run, resumed like one;
          its epoch chosen by `train.select_on`, e.g. the probe of
          `aevb/regimes/probe.py`). Only its active units are
          kept (Cov_x E[z_u|x] > 0.01, as the paper's code does): an inactive unit is noise
          around the prior that a standardised classifier would amplify.
  pixels  the images themselves (grey levels), e.g. the paper's "NN on the labels alone".
The classifier (`semisupervised.classifier`):
  logistic | mlp | knn | svm   fitted on the host to the labeled examples' features, its
          hyperparameters selected on the labeled validation split
          (`aevb/evaluation/host_classifiers.py`);
  poisson | laplace | spreading   on the host, transductive: labels spread over a kNN
          graph of every training and test example's features (its distance
          `semisupervised.graph_metric`), selected on the validation nodes
          (`aevb/evaluation/graph_classifiers.py`);
  m2      the semi-supervised VAE (`aevb/models/m2.py`, on the trunks of `m2.architecture`:
          mlp, or conv on pixels only) trained on every training example, labeled or not,
          through the one loop (`aevb/training/loop.py`): each step one batch of
          `m2.batch_size` unlabeled examples and one class-balanced batch of
          `m2.labeled_batch_size` labeled ones (`aevb/training/epoch.py`); evaluated every
          `m2.eval_every_epochs` epochs, the evaluation of the best validation accuracy is
          kept, early stopping after `m2.patience` epochs without a better one. On M1
          features (M1 + M2) its inputs are fresh samples of q(z1|x) every step, and its
          p(z1|y, z2) is a Gaussian.
The labeled subset (`labels.num`, class-balanced) and the labeled validation split outside it
(`labels.num_validation`, default as many) are those of `aevb/regimes/labels.py`; the test set is
only reported, never read for a choice.

Run files: `config.json`; `m1/` (the VAE's run); `m2/checkpoints` (per epoch: the state and
the selection); `metrics.jsonl`; pictures of M2, decoded to pixels through M1's decoder on M1
features: `class_samples.png` (a row per class, one style z per column) and `analogies.png`
(the first row test images, then their style in every class); `summary.json`.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from aevb import architectures, models
from aevb.config.checks import ConfigError
from aevb.evaluation import plots
from aevb.evaluation.measures import map_in_chunks
from aevb.models import m2 as m2_lib
from aevb.regimes import classifier
from aevb.regimes.features import Features, m1_features, pixel_features
from aevb.regimes.labels import labeled_and_validation
from aevb.regimes.prepare import flat_images, load_and_check
from aevb.run import files, parallel
from aevb.run.workdir import claim
from aevb.training import keys, loop
from aevb.training.epoch import make_train_epoch
from aevb.training.train_state import TrainState, make_optimizer, num_parameters

NUM_PICTURE_COLUMNS = 10


def host_classifier(config: ml_collections.ConfigDict, features: Features, labels: np.ndarray,
                    test_labels: np.ndarray, labeled: np.ndarray, held_out: np.ndarray
                    ) -> dict[str, Any]:
    """A classical classifier on the labeled features, selected on the validation split."""
    # scikit-learn takes a second to import: only the runs that use it pay for it
    from aevb.evaluation import graph_classifiers, host_classifiers

    if config.semisupervised.classifier in graph_classifiers.KINDS:
        return graph_classifier(config, features, labels, test_labels, labeled, held_out)
    t0 = time.perf_counter()
    x = features.train_eval
    selection = host_classifiers.fit_and_select(
        config.semisupervised.classifier, x[labeled], labels[labeled], x[held_out],
        labels[held_out], config.train.seed)
    out = {"test_accuracy": host_classifiers.accuracy(selection, features.test, test_labels),
           **_selected(selection, t0)}
    if selection.epochs is not None:
        out["selected_epoch"] = selection.epochs
    return out


def _selected(selection, t0: float) -> dict[str, Any]:
    """A host or graph classifier's `selected_<hparam>` values, its seconds since `t0` and
    its validation accuracy (when it had a validation split)."""
    out = {**{f"selected_{k}": v for k, v in selection.hparams.items()},
           "classifier_seconds": time.perf_counter() - t0}
    if selection.validation_accuracy is not None:
        out["validation_accuracy"] = selection.validation_accuracy
    return out


def graph_classifier(config: ml_collections.ConfigDict, features: Features,
                     labels: np.ndarray, test_labels: np.ndarray, labeled: np.ndarray,
                     held_out: np.ndarray) -> dict[str, Any]:
    """A graph method on every training and test example's features (transductive: the
    test examples are unlabeled nodes), selected on the validation split's nodes."""
    from aevb.evaluation import graph_classifiers

    t0 = time.perf_counter()
    x = np.concatenate([features.train_eval, features.test])
    selection = graph_classifiers.fit_and_select(
        config.semisupervised.classifier, x, labeled, labels[labeled], held_out,
        labels[held_out], config.semisupervised.graph_metric,
        tuple(config.semisupervised.graph_neighbors))
    test_predictions = selection.predictions[len(features.train_eval):]
    every_label = np.concatenate([labels, test_labels])
    unlabeled = np.setdiff1d(np.arange(len(x)), labeled)
    out = {"test_accuracy": float(np.mean(test_predictions == test_labels)),
           # Calder et al.'s measure: every node without a label, validation and test too
           "unlabeled_accuracy": float(np.mean(selection.predictions[unlabeled]
                                               == every_label[unlabeled])),
           "graph_nodes": len(x), "graph_metric": selection.metric, "transductive": True,
           **_selected(selection, t0)}
    if selection.iterations is not None:
        out["graph_iterations"] = selection.iterations
    return out


def _check_balanced(config: ml_collections.ConfigDict, labels: np.ndarray,
                    num_classes: int) -> None:
    """M2's labeled batch: an equal number of each class, each class having that many."""
    size = config.m2.labeled_batch_size
    if size % num_classes:
        raise ConfigError(f"config field m2.labeled_batch_size={size} is not allowed: a "
                          f"balanced batch holds the same number of each of the {num_classes} "
                          f"classes, so it must be a multiple of {num_classes}")
    fewest = int(np.bincount(labels, minlength=num_classes).min())
    if size // num_classes > fewest:
        raise ConfigError(f"config field m2.labeled_batch_size={size} is not allowed: a "
                          f"class has only {fewest} labeled examples, fewer than "
                          f"{size // num_classes} per batch; at most {fewest * num_classes}")


@functools.partial(jax.jit, static_argnames=("model", "chunk_size", "mesh"))
def _m2_predict(model, params, x: jax.Array, chunk_size: int, mesh=None) -> jax.Array:
    """argmax_y q(y|x) [N] of inputs x [N, F], in chunks."""

    def fn(xc, _):
        return {"class": jnp.argmax(m2_lib.class_probabilities(model, params, xc), -1)}
    return map_in_chunks(fn, x, jax.random.key(0), chunk_size, mesh)["class"]


@dataclasses.dataclass(frozen=True)
class M2Setup:
    """What M2 trains, built by `m2_setup` (the regime and benchmarks/m2_throughput.py):
    `train_epoch(state, inputs, key, labeled_set)` the compiled epoch (it donates the
    state), `inputs` the unlabeled examples' features on the mesh, `labeled_set` the
    labeled ones with their labels, replicated, `steps` per epoch."""

    model: m2_lib.M2
    tx: Any
    state: TrainState
    train_epoch: Callable[..., Any]
    inputs: jax.Array
    labeled_set: tuple[jax.Array, jax.Array]
    unlabeled: np.ndarray
    steps: int


def m2_setup(config: ml_collections.ConfigDict, features: Features, labels: np.ndarray,
             labeled: np.ndarray, held_out: np.ndarray, init_key: jax.Array, mesh
             ) -> M2Setup:
    """M2's model, optimizer, initial state (from `init_key`) and compiled epoch, over the
    training examples outside the labeled ones (and outside the validation ones under
    `labels.hold_out`), with a balanced labeled batch every step."""
    mc, num_classes = config.m2, int(labels.max()) + 1
    model = m2_model(config, num_classes, features)
    params = m2_lib.init_params(model, init_key)
    unlabeled = np.setdiff1d(np.arange(len(labels)), np.concatenate(
        [labeled, held_out] if config.labels.hold_out else [labeled]))
    steps = len(unlabeled) // mc.batch_size
    tx = make_optimizer(mc, mc.num_epochs * steps)
    objective = functools.partial(_m2_objective, model, mc.alpha,
                                  len(labeled) / (len(labeled) + len(unlabeled)))
    return M2Setup(
        model=model, tx=tx, state=parallel.replicate(TrainState.create(params, tx), mesh),
        train_epoch=make_train_epoch(objective, tx, mc.batch_size, features.prepare, mesh,
                                     (num_classes, mc.labeled_batch_size // num_classes),
                                     num_examples=len(unlabeled)),
        inputs=parallel.shard_rows(features.train[unlabeled], 0, len(unlabeled), mesh),
        labeled_set=parallel.replicate((features.train[labeled], labels[labeled]), mesh),
        unlabeled=unlabeled, steps=steps)


def train_m2(config: ml_collections.ConfigDict, workdir: str, features: Features, datasets,
             labeled: np.ndarray, held_out: np.ndarray, run: loop.Run
             ) -> tuple[dict[str, Any], Callable[[], Any]]:
    """M2 on the features through the loop; returns its summary and its pictures' drawer."""
    labels, test_labels = datasets.train.labels, datasets.test.labels
    image_shape = datasets.image_shape
    test_images = np.asarray(classifier.inputs(
        jnp.asarray(flat_images(datasets.test)[:NUM_PICTURE_COLUMNS]), "none"))
    mc = config.m2
    mesh = parallel.make_mesh()
    m2_keys = keys.classifier_keys(keys.run_keys(config.train.seed, config.train.prng_impl))
    built = m2_setup(config, features, labels, labeled, held_out, m2_keys.init, mesh)
    model, state, steps, unlabeled = built.model, built.state, built.steps, built.unlabeled
    params = state.params
    splits = {"validation": (features.train_eval[held_out], labels[held_out]),
              "test": (features.test, test_labels)}
    splits = {k: (parallel.replicate(jnp.asarray(x), mesh), y) for k, (x, y) in splits.items()
              if len(y)}

    def evaluate(p, _):
        return {f"{k}_accuracy": float(np.mean(parallel.fetch(
            _m2_predict(model, p, x, config.eval.batch_size, mesh)) == y))
            for k, (x, y) in splits.items()}

    selects = "validation" in splits
    run.log(f"M2: {num_parameters(params):,} parameters, {len(labeled)} labeled and "
            f"{len(unlabeled)} unlabeled examples, {mc.num_epochs} epochs of {steps} steps "
            f"({mc.batch_size} unlabeled + {mc.labeled_batch_size} labeled, balanced), "
            f"selected on {len(held_out)} labeled validation examples"
            f"{parallel.describe_devices()}")
    result = run.train(loop.Phase(
        state=state, num_rounds=mc.num_epochs,
        run=lambda s, _, key: built.train_epoch(s, built.inputs, key, built.labeled_set),
        evaluate=evaluate, checkpoint_dir=files.checkpoint_dir(workdir, "m2"),
        keys=(m2_keys.m2_train, None), cadence=loop.cadence(config, "m2"),
        select=(loop.Select("validation_accuracy", -(-mc.patience // mc.eval_every_epochs))
                if selects else None),
        display=loop.Display(name="m2", headline="accuracy",
                             examples_per_round=steps * mc.batch_size,
                             learning_rate_field="m2.learning_rate")))
    summary = {"num_params": num_parameters(params), "unlabeled_examples": len(unlabeled),
               **result.train[0], **result.eval[0],
               "selected_epoch": result.selected_round or mc.num_epochs,
               "train_seconds": result.seconds, "examples_per_s": result.examples_per_s}
    best = parallel.fetch(result.params)
    s = NUM_PICTURE_COLUMNS

    def draw():
        return m2_pictures(model, best, features, features.test[:s], test_images[:s],
                           image_shape, m2_keys.m2_pictures, workdir)
    return summary, draw


def m2_model(config: ml_collections.ConfigDict, num_classes: int, features: Features
             ) -> m2_lib.M2:
    """M2 on the trunks of `m2.architecture` (conv layers from `model.conv`), for inputs of
    `features.shape`: q(y|x) an encoder trunk of `m2.hidden_sizes` under the class logits,
    q(z|x, y) the architecture's own layers under M2's dense layers, p(x|y, z) a decoder
    trunk of `m2.hidden_sizes` (mlp: the paper's M2, as `m2_lib.dense_m2` builds it)."""
    mc = config.m2
    arch = architectures.get(mc.architecture)
    sizes, shape, likelihood = tuple(mc.hidden_sizes), features.shape, features.likelihood

    def trunk(widths: tuple[int, ...]):
        return arch.encoder_trunk(config.model, shape, widths, mc.activation)

    channels, output_name = models.PIXEL_OUTPUTS[likelihood]
    decoder = arch.decoder_trunk(config.model, shape, sizes, mc.activation, channels,
                                 output_name=output_name)
    return m2_lib.M2(classifier=m2_lib.ClassifierHead(trunk(sizes), num_classes),
                     encoder=m2_lib.StyleEncoder(trunk(()), sizes, mc.latent_dim,
                                                 mc.activation),
                     decoder=m2_lib.DecoderHead(decoder, likelihood), num_classes=num_classes,
                     latent_dim=mc.latent_dim, output_dim=int(np.prod(shape)),
                     likelihood=likelihood)


def _m2_objective(model, alpha: float, labeled_fraction: float, params, x, key, step,
                  x_labeled, y_labeled) -> dict[str, jax.Array]:
    """The epoch's objective: M2's loss (`m2_lib.m2_loss`) and its terms, as scalars."""
    del step
    loss, terms = m2_lib.m2_loss(model, params, x, x_labeled, y_labeled, key, alpha=alpha,
                                 labeled_fraction=labeled_fraction)
    return {**terms, "loss": loss}


def m2_pictures(model, params, features: Features, test_x: np.ndarray,
                test_images: np.ndarray, image_shape: tuple[int, int, int], key: jax.Array,
                workdir: str) -> list[str]:
    """`class_samples.png` (row y, column s: the decoder's mean for class y and style
    z_s ~ N(0, I)) and `analogies.png` (the first row the test images, then row y: the style
    of each inferred from q(z|x, y_hat), in class y) of a trained M2, as pixels.
    test_x: the test images' features [S, F]; test_images: their pixels [S, D]."""
    s = len(test_x)
    z = jax.random.normal(key, (s, model.latent_dim))

    @jax.jit  # one program each, not one per operation
    def draw(params, z, test_x):
        samples = m2_lib.class_conditional_samples(model, params, z)
        rows = m2_lib.analogies(model, params, test_x)[s:]
        return features.to_pixels(samples), features.to_pixels(rows)

    samples, rows = draw(params, z, jnp.asarray(test_x))
    analogies = np.concatenate([test_images, np.asarray(rows)])
    return [plots.save_grid(np.asarray(samples), image_shape, workdir, files.CLASS_SAMPLES,
                            columns=s),
            plots.save_grid(analogies, image_shape, workdir, files.ANALOGIES, columns=s)]


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       train_autoencoder: Callable[[ml_collections.ConfigDict, str], dict]
                       ) -> dict[str, Any]:
    """Trains the configured features (M1: by `train_autoencoder`) and classifier on the
    labeled subset (with every training image, for M2), selects on the validation split,
    reports test accuracy. Returns the summary (also in `<workdir>/summary.json`). Raises
    ConfigError or data.DataError before writing anything when the config, the data or the
    labeled subsets are unusable."""
    datasets = load_and_check(config, share=False)  # labeled examples picked across every row
    labels = datasets.train.labels
    labeled, held_out = labeled_and_validation(config, labels)
    sc = config.semisupervised
    if sc.classifier == "m2":
        _check_balanced(config, labels[labeled], int(labels.max()) + 1)
    claim(config, workdir, datasets.record())
    run = loop.Run([workdir])
    t0 = time.perf_counter()
    features = (m1_features(config, workdir, datasets, train_autoencoder)
                if sc.features == "m1" else pixel_features(config, datasets))
    run.log(f"{sc.features} features ({features.train_eval.shape[1]} per example), "
            f"classifier {sc.classifier}: {len(labeled)} labeled examples, "
            f"{len(held_out)} labeled validation examples")
    summary: dict[str, Any] = {
        "experiment": config.experiment, "dataset": datasets.name, "task": "semisupervised",
        "features": sc.features, "classifier": sc.classifier, "labels_num": len(labeled),
        "labels_num_validation": len(held_out), **features.summary,
        "features_seconds": time.perf_counter() - t0}
    pictures = []
    if sc.classifier == "m2":
        result, draw = train_m2(config, workdir, features, datasets, labeled, held_out, run)
        pictures.append(draw)
    else:
        result = host_classifier(config, features, labels, datasets.test.labels, labeled,
                                 held_out)
    summary.update(result)
    summary["test_error"] = 1.0 - summary["test_accuracy"]
    final = {k: v for k, v in summary.items()
             if k.endswith(("accuracy", "error")) and not k.startswith("m1_")}
    run.finish([summary], [final], pictures=pictures)
    return summary
