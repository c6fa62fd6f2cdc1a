"""Unsupervised pretraining for a classifier with few labels.

Phase 1 trains an autoencoder of the family, or the VAE, on every training image without
reading a label: it is an ordinary run of the configured model (joint or layer-wise, with
its noise and sparsity regimes) in `<workdir>/autoencoder`, through
`train.train_and_evaluate`. Phase 2 builds a classifier from the lower
`classifier.encoder_layers` layers of its encoder (the VAE's: its hidden layers and the
mean of q(z|x)) and a softmax head, and trains it with cross-entropy on `labels.num`
labeled training examples, class-balanced and chosen by `labels.seed`, the encoder
`frozen` (only the head learns) or `trainable`. The baseline, in the same run, trains the
identical classifier from its random initialisation, every layer trainable, on the same
examples, in the same batches, for the same `classifier.num_steps` steps.

Inputs: the grey levels in [0, 1] (thresholded at 0.5 under `data.binarize=static`); a
VAE trained on dynamically binarized images sees their expectation, the grey levels.

Run files, in `workdir`: `config.json`; `autoencoder/` (the phase-1 run's own files);
`classifier_pretrained/checkpoints` and `classifier_scratch/checkpoints` (every
`classifier.eval_every_steps` steps); `metrics.jsonl` (`phase`: `pretrained` or `scratch`,
metric names prefixed by it; `epoch` counts evaluation rounds over both classifiers);
`accuracy.png` (test accuracy against steps); `summary.json`: the autoencoder's summary,
then `pretrained_test_accuracy`, `scratch_test_accuracy`, their difference
`accuracy_gain`, and the labeled set's size and accuracies. An interrupted run resumes
where it stopped.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp

from aevb import configs, evaluate, models, train
from aevb import data as data_lib
from aevb.metrics import MetricWriter

Params = dict[str, Any]
RoundCallback = Callable[[int, train.TrainState, dict[str, float]], None]


# ----------------------------------------------------------------------------- the model

class Classifier(nn.Module):
    """Dense encoder layers and a softmax head: x [..., D] -> class logits [..., C].

    Encoder layer i maps widths[i] -> widths[i + 1] and applies activations[i]; the head
    maps widths[-1] -> num_classes. Parameters are flat and named as an autoencoder's
    encoder (`encoder_kernel_i`, `encoder_bias_i`), so pretrained layers drop in, plus
    `head_kernel` and `head_bias`.
    """

    widths: Sequence[int]
    activations: Sequence[str]
    num_classes: int = 10

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel_init, zeros = nn.initializers.lecun_normal(), nn.initializers.zeros_init()
        for i, act in enumerate(self.activations):
            w = self.param(f"encoder_kernel_{i}", kernel_init, (self.widths[i], self.widths[i + 1]))
            b = self.param(f"encoder_bias_{i}", zeros, (self.widths[i + 1],))
            x = models.get_activation(act)(x @ w + b)
        w = self.param("head_kernel", kernel_init, (self.widths[-1], self.num_classes))
        b = self.param("head_bias", zeros, (self.num_classes,))
        return x @ w + b


def encoder_spec(model_config: ml_collections.ConfigDict, num_pixels: int,
                 num_layers: int = 0) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """(widths, activations) of the lower `num_layers` layers (0 = all) of the encoder.

    Autoencoder: D -> hidden_sizes -> code, `model.activation` then `model.code_activation`.
    VAE: D -> hidden_sizes -> mean of q(z|x), `model.activation` then linear.
    """
    widths = (num_pixels, *model_config.hidden_sizes, model_config.latent_dim)
    top = model_config.code_activation if model_config.kind == "autoencoder" else "linear"
    activations = (model_config.activation,) * len(model_config.hidden_sizes) + (top,)
    num_layers = num_layers or len(activations)
    return widths[:num_layers + 1], activations[:num_layers]


def pretrained_encoder(model_config: ml_collections.ConfigDict, params: Params,
                       num_layers: int = 0) -> dict[str, jax.Array]:
    """The lower `num_layers` (0 = all) encoder layers of a trained model, named as in
    `Classifier`: {"encoder_kernel_i": [w_i, w_{i+1}], "encoder_bias_i": [w_{i+1}]}.

    For the VAE, the top layer is the mean half of its `mean_log_var` layer.
    """
    p = params["params"]
    layers: list[tuple[jax.Array, jax.Array]] = []
    if model_config.kind == "autoencoder":
        for i in range(len(model_config.hidden_sizes) + 1):
            layers.append((p[f"encoder_kernel_{i}"], p[f"encoder_bias_{i}"]))
    else:
        encoder, latent = p["encoder"], model_config.latent_dim
        for i in range(len(model_config.hidden_sizes)):
            dense = encoder["mlp"][f"hidden_{i}"]
            layers.append((dense["kernel"], dense["bias"]))
        top = encoder["mean_log_var"]
        layers.append((top["kernel"][:, :latent], top["bias"][:latent]))
    out = {}
    for i, (kernel, bias) in enumerate(layers[:num_layers or len(layers)]):
        out[f"encoder_kernel_{i}"], out[f"encoder_bias_{i}"] = kernel, bias
    return out


def with_encoder(params: Params, encoder: dict[str, jax.Array]) -> Params:
    """A classifier's parameters with its encoder layers replaced (the head kept)."""
    return {**params, "params": {**params["params"], **encoder}}


def is_encoder(name: str) -> bool:
    return name.startswith("encoder_")


# ----------------------------------------------------------------------------- the data

def labeled_subset(labels: np.ndarray, num: int, seed: int) -> np.ndarray:
    """Sorted indices of `num` labeled examples, class-balanced (0 = all examples).

    Every class gets num // C examples and num % C classes, drawn by the seed, one more.
    Each class's examples are taken in the order of one permutation drawn from the seed,
    so with one seed a smaller balanced subset is part of a larger one. Raises ConfigError
    (labels.num) when a class has too few examples.
    """
    labels = np.asarray(labels)
    if num == 0:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    orders = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    per_class = np.full(len(classes), num // len(classes))
    per_class[rng.permutation(len(classes))[:num % len(classes)]] += 1
    for c, order, k in zip(classes, orders, per_class):
        if k > len(order):
            raise configs.ConfigError(
                f"config field labels.num={num} is not allowed: class {c} has only "
                f"{len(order)} training examples, {k} needed for a balanced subset")
    return np.sort(np.concatenate([order[:k] for order, k in zip(orders, per_class)]))


def classifier_inputs(images: jax.Array, binarize: str) -> jax.Array:
    """uint8 pixels [N, D] -> float32 classifier inputs [N, D]: grey levels (static: 0/1)."""
    x = data_lib.to_unit_interval(images)
    return data_lib.binarize(x, "static", None) if binarize == "static" else x


# ----------------------------------------------------------------------------- training

def make_classifier_optimizer(classifier_config: ml_collections.ConfigDict,
                              frozen: bool) -> optax.GradientTransformation:
    """`classifier.optimizer`; with a frozen encoder, only the head's parameters move."""
    tx = train.make_optimizer(classifier_config)
    if not frozen:
        return tx
    labels = lambda params: jax.tree_util.tree_map_with_path(
        lambda path, _: "frozen" if is_encoder(path[-1].key) else "train", params)
    return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)


def create_classifier_state(params: Params, tx: optax.GradientTransformation
                            ) -> train.TrainState:
    """Step 0: a copy of `params` (training donates its buffers) and a fresh optimizer."""
    params = jax.tree.map(jnp.copy, params)
    return train.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                            opt_state=tx.init(params))


def cross_entropy_terms(model: Classifier, params: Params, x: jax.Array,
                        labels: jax.Array) -> dict[str, jax.Array]:
    """Per-example softmax cross-entropy (nats) and correctness, each [B], of x [B, D]."""
    logits = model.apply(params, x)
    return {"loss": optax.softmax_cross_entropy_with_integer_labels(logits, labels),
            "accuracy": (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)}


@functools.lru_cache(maxsize=64)
def make_classifier_round(model: Classifier, classifier_config_json: str, frozen: bool,
                          binarize: str, num_steps: int
                          ) -> Callable[..., tuple[train.TrainState, dict[str, jax.Array]]]:
    """`round(state, images u8 [N, D], labels [N], key) -> (state, metrics)`, jitted once.

    `num_steps` steps of `classifier.batch_size` examples in one `lax.scan`: the batches are
    cut from consecutive permutations of the N labeled examples (each example once per
    pass), drawn from the key. With a frozen encoder the encoder's parameters are behind
    `stop_gradient` (no backward pass through them) and the optimizer leaves them as they
    are. Metrics: mean cross-entropy and accuracy over the round's batches. Cached per
    configuration (the `classifier` section as JSON, hashable), so classifiers of one shape
    share one compilation.
    """
    classifier_config = ml_collections.ConfigDict(json.loads(classifier_config_json))
    tx = make_classifier_optimizer(classifier_config, frozen)
    batch_size = classifier_config.batch_size

    def step(state: train.TrainState, batch: tuple[jax.Array, jax.Array]):
        x, y = batch

        def loss_fn(params):
            if frozen:
                params = {**params, "params": {
                    name: jax.lax.stop_gradient(v) if is_encoder(name) else v
                    for name, v in params["params"].items()}}
            terms = cross_entropy_terms(model, params, x, y)
            return jnp.mean(terms["loss"]), terms

        return train.apply_gradients(state, tx, loss_fn)

    def run(state: train.TrainState, images: jax.Array, labels: jax.Array, key: jax.Array):
        n = images.shape[0]
        num_passes = -(-num_steps * batch_size // n)
        perms = jax.vmap(lambda k: jax.random.permutation(k, n))(
            jax.random.split(key, num_passes))
        idx = perms.reshape(-1)[:num_steps * batch_size].reshape(num_steps, batch_size)

        def body(state, batch_idx):
            x = classifier_inputs(images[batch_idx], binarize)
            return step(state, (x, labels[batch_idx]))

        state, metrics = jax.lax.scan(body, state, idx)
        return state, jax.tree.map(jnp.mean, metrics)

    return jax.jit(run, donate_argnums=0)


@functools.partial(jax.jit, static_argnames=("model", "chunk_size"))
def predict(model: Classifier, params: Params, x: jax.Array, chunk_size: int) -> jax.Array:
    """Predicted classes [N] of inputs x [N, D], in chunks."""
    fn = lambda xc, _: {"class": jnp.argmax(model.apply(params, xc), axis=-1)}
    return evaluate.map_in_chunks(fn, x, jax.random.key(0), chunk_size)["class"]


def accuracy(model: Classifier, params: Params, x: jax.Array, labels: np.ndarray,
             chunk_size: int = 1000) -> float:
    """Fraction of inputs x [N, D] whose predicted class is the label [N]."""
    return float(np.mean(np.asarray(predict(model, params, x, chunk_size)) == labels))


def fit_classifier(classifier_config: ml_collections.ConfigDict, model: Classifier,
                   state: train.TrainState, frozen: bool, binarize: str, images: jax.Array,
                   labels: jax.Array, key: jax.Array, start_step: int = 0,
                   on_round: RoundCallback | None = None) -> train.TrainState:
    """Trains a classifier from step `start_step` to `classifier.num_steps`.

    images uint8 [N, D] and labels [N]: the labeled set. Rounds of
    `classifier.eval_every_steps` steps (the last may be shorter), round r ending at step
    s with key fold_in(key, s); `on_round(s, state, metrics)` follows each.
    """
    every, total = classifier_config.eval_every_steps, classifier_config.num_steps
    config_json = classifier_config.to_json()
    step = start_step
    while step < total:
        num_steps = min(every - step % every, total - step)
        run = make_classifier_round(model, config_json, frozen, binarize, num_steps)
        step += num_steps
        state, metrics = run(state, images, labels, jax.random.fold_in(key, step))
        if on_round is not None:
            on_round(step, state, {name: float(v) for name, v in metrics.items()})
    return state


# ----------------------------------------------------------------------------- phase 1

def autoencoder_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The phase-1 config: the same model and regimes, as a plain reconstruction run."""
    ae_config = config.copy_and_resolve_references()
    ae_config.task = "reconstruct"
    return ae_config


def pretrain_autoencoder(config: ml_collections.ConfigDict, workdir: str,
                         num_pixels: int) -> tuple[dict[str, Any], Params]:
    """Phase 1: trains the configured autoencoder (or VAE) on the training images in
    `workdir` (resuming there), and returns its summary and its trained parameters.

    A plain `train.train_and_evaluate` run: it reads images only, never a label (tested).
    A finished run (its summary.json, for these epochs) is not run again: its summary and
    last checkpoint are read back.
    """
    ae_config = autoencoder_config(config)
    summary_path = os.path.join(workdir, "summary.json")
    summary = None
    if os.path.exists(summary_path):
        with open(summary_path) as f:
            summary = json.load(f)
    if summary is None or summary.get("epochs") != ae_config.train.num_epochs:
        summary = train.train_and_evaluate(ae_config, workdir)
    return summary, restore_final_params(ae_config, workdir, num_pixels)


def restore_final_params(config: ml_collections.ConfigDict, workdir: str,
                         num_pixels: int) -> Params:
    """The parameters in the latest checkpoint of `<workdir>/checkpoints` (joint runs
    checkpoint there; layer-wise runs keep their assembled, fine-tuned stack there)."""
    model = train.make_model(config.model, num_pixels)
    tx = train.make_optimizer(config.train)
    template = train.create_train_state(model, tx, jax.random.key(0), num_pixels)
    manager = train.checkpoint_manager(workdir, config.train)
    if manager.latest_step() is None:
        raise FileNotFoundError(f"no checkpoint in {workdir}/checkpoints")
    state, _ = train.restore_or_keep(manager, template)
    manager.close()
    return state.params


# ----------------------------------------------------------------------------- the run

def _num_rounds(steps: int, every: int) -> int:
    return -(-steps // every)


def _save_accuracy_plot(workdir: str, path: str) -> str:
    """Test accuracy against classifier steps, pretrained and scratch, from metrics.jsonl."""
    import matplotlib  # only runs that draw it pay for the import

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves: dict[str, list[tuple[int, float]]] = {"pretrained": [], "scratch": []}
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for record in map(json.loads, f):
            name = record.get("phase")
            if name in curves and f"{name}/test_accuracy" in record:
                curves[name].append((record["step"], record[f"{name}/test_accuracy"]))
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    for name, points in curves.items():
        if points:
            ax.plot(*zip(*points), marker="o", label=name)
    ax.set_xlabel("classifier step")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def build_classifiers(config: ml_collections.ConfigDict, num_pixels: int, num_classes: int,
                      ae_params: Params) -> tuple[Classifier, Params, Params]:
    """The classifier and its two initial parameter sets: (model, pretrained, scratch).

    Both share the head's random initialisation (from train.seed); `pretrained` has the
    autoencoder's encoder layers, `scratch` random ones (LeCun normal, zero biases).
    """
    cc = config.classifier
    widths, activations = encoder_spec(config.model, num_pixels, cc.encoder_layers)
    model = Classifier(tuple(widths), tuple(activations), num_classes)
    scratch = model.init(classifier_keys(config)[0], jnp.zeros((1, num_pixels), jnp.float32))
    pretrained = with_encoder(scratch, pretrained_encoder(config.model, ae_params,
                                                          cc.encoder_layers))
    return model, pretrained, scratch


def classifier_keys(config: ml_collections.ConfigDict) -> tuple[jax.Array, jax.Array]:
    """(initialisation key, batch key) of phase 2, from train.seed."""
    root = jax.random.fold_in(jax.random.key(config.train.seed), 1)
    init_key, batch_key = jax.random.split(root)
    return init_key, batch_key


def round_callback(writer: MetricWriter, manager: ocp.CheckpointManager, name: str,
                   log_offset: int, classifier_config: ml_collections.ConfigDict,
                   model: Classifier, test_x: jax.Array, test_y: np.ndarray) -> RoundCallback:
    """`on_round(step, state, metrics)` of one classifier in a run: stops on a non-finite
    loss, measures test accuracy, writes a metrics line (names prefixed by `name`),
    checkpoints at `step` and prints a progress line."""
    every, total = classifier_config.eval_every_steps, classifier_config.num_steps

    def on_round(step: int, state: train.TrainState, metrics: dict[str, float]) -> None:
        if not math.isfinite(metrics["loss"]):
            raise train.NonFiniteLossError(
                f"{name} classifier, step {step}: the training loss is {metrics['loss']}; "
                f"stopped at the checkpoint of step {manager.latest_step()}. "
                "Try a smaller classifier.learning_rate.")
        test_accuracy = accuracy(model, state.params, test_x, test_y)
        writer.write(log_offset + _num_rounds(step, every), step,
                     {"phase": name, f"{name}/train_loss": metrics["loss"],
                      f"{name}/train_accuracy": metrics["accuracy"],
                      f"{name}/test_accuracy": test_accuracy})
        manager.save(step, args=ocp.args.StandardSave(state))
        print(f"{name:>10} step {step:5d}/{total}  loss {metrics['loss']:.4g}  "
              f"train accuracy {metrics['accuracy']:.4f}  test accuracy {test_accuracy:.4f}",
              flush=True)

    return on_round


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Pretrains the configured autoencoder without labels, then trains the classifier built
    on its encoder and the scratch baseline on the labeled subset; evaluates both on the
    test set. Returns the summary (also in `<workdir>/summary.json`).

    Raises ConfigError or data.DataError before writing anything when the config, the data
    or the labeled subset is unusable.
    """
    configs.validate(config)
    datasets = data_lib.load(config.data)
    configs.validate_against_data(config, datasets.train.images.shape[0])
    labeled = labeled_subset(datasets.train.labels, config.labels.num, config.labels.seed)
    train.write_or_check_config(config, workdir)
    num_pixels = datasets.num_pixels

    # Phase 1: the autoencoder, on every training image, no labels.
    ae_summary, ae_params = pretrain_autoencoder(config, os.path.join(workdir, "autoencoder"),
                                                 num_pixels)

    # Phase 2: the same classifier twice, from the pretrained encoder and from scratch.
    cc = config.classifier
    num_classes = int(datasets.train.labels.max()) + 1
    model, pretrained, scratch = build_classifiers(config, num_pixels, num_classes, ae_params)
    batch_key = classifier_keys(config)[1]
    images = jnp.asarray(datasets.train.images.reshape(-1, num_pixels)[labeled])
    labels = jnp.asarray(datasets.train.labels[labeled])
    labeled_x = classifier_inputs(images, config.data.binarize)
    test_x = classifier_inputs(jnp.asarray(datasets.test.images.reshape(-1, num_pixels)),
                               config.data.binarize)
    test_y = datasets.test.labels

    runs = {"pretrained": (pretrained, cc.encoder == "frozen"), "scratch": (scratch, False)}
    managers = {name: train.checkpoint_manager(os.path.join(workdir, f"classifier_{name}"),
                                               config.train) for name in runs}
    num_rounds = _num_rounds(cc.num_steps, cc.eval_every_steps)
    writer = MetricWriter(workdir, resume_after_epoch=sum(
        _num_rounds(m.latest_step() or 0, cc.eval_every_steps) for m in managers.values()))
    print(f"classifier {'-'.join(map(str, model.widths))}-{num_classes} on {len(labeled)} "
          f"labeled examples, {cc.num_steps} steps of {cc.batch_size}; pretrained encoder "
          f"{cc.encoder}, against the same classifier from scratch", flush=True)

    summary: dict[str, Any] = {**ae_summary, "experiment": config.experiment,
                               "task": "pretrain", "labels_num": len(labeled),
                               "classifier_encoder": cc.encoder,
                               "classifier_steps": cc.num_steps}
    for i, (name, (params, frozen)) in enumerate(runs.items()):
        manager = managers[name]
        tx = make_classifier_optimizer(cc, frozen)
        state, start = train.restore_or_keep(manager, create_classifier_state(params, tx))
        on_round = round_callback(writer, manager, name, i * num_rounds, cc, model, test_x,
                                  test_y)
        t0 = time.perf_counter()
        state = fit_classifier(cc, model, state, frozen, config.data.binarize, images, labels,
                               batch_key, start, on_round)
        manager.wait_until_finished()
        manager.close()
        summary[f"{name}_test_accuracy"] = accuracy(model, state.params, test_x, test_y)
        summary[f"{name}_labeled_accuracy"] = accuracy(model, state.params, labeled_x,
                                                       np.asarray(labels))
        summary[f"{name}_seconds"] = time.perf_counter() - t0
    summary["accuracy_gain"] = (summary["pretrained_test_accuracy"]
                                - summary["scratch_test_accuracy"])
    if jax.process_index() == 0:
        _save_accuracy_plot(workdir, os.path.join(workdir, "accuracy.png"))
    train.write_summary(workdir, summary, writer, 2 * num_rounds, cc.num_steps,
                        {name: v for name, v in summary.items()
                         if name.endswith("accuracy") or name == "accuracy_gain"})
    writer.close()
    print("summary: " + "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                  for k, v in summary.items()), flush=True)
    return summary
