"""The train state, the optimizers, and one compiled epoch: the step every regime runs.

A whole epoch is one compiled program: a `lax.scan` over batches gathered from the
on-device training set by a permutation drawn on the device, so Python dispatches once per
epoch. Keys: the epoch's key is split into the permutation key and one key per step, and
each step's key into the binarization key and the objective's key (noise, sampling).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from aevb.data.pixels import preprocess
from aevb.run import parallel
from aevb.training.train_state import TrainState, apply_gradients

Metrics = dict[str, jax.Array]


Prepare = Callable[[jax.Array, jax.Array], jax.Array]  # (batch [B, ...], key) -> inputs


def _prepare(binarize: str | Prepare | None) -> Prepare:
    """The per-batch input preparation: binarization under `data.binarize` (uint8 images),
    a given function (e.g. sampling codes), or nothing (float inputs used as they are)."""
    if binarize is None:
        return lambda x, _: x
    if callable(binarize):
        return binarize
    return lambda x, key: preprocess(x, binarize, key)


def balanced_batches(key: jax.Array, labels: jax.Array, num_classes: int, per_class: int,
                     num_steps: int) -> jax.Array:
    """Indices [num_steps, num_classes * per_class] into a labeled set with `labels` [N]:
    every batch holds `per_class` examples of each class, drawn without replacement within
    the batch (each class's examples in a fresh random order per step), class by class."""
    classes = jnp.arange(num_classes)

    def one(k):
        scores = jax.random.uniform(k, (num_classes, labels.shape[0]))
        scores = jnp.where(labels[None, :] == classes[:, None], scores, 2.0)
        return jnp.argsort(scores, axis=1)[:, :per_class].reshape(-1)

    return jax.vmap(one)(jax.random.split(key, num_steps))


def epoch_function(objective: Callable[..., Metrics],
                   tx: optax.GradientTransformation, batch_size: int,
                   binarize: str | Prepare | None, mesh: Mesh | None = None,
                   labeled_batch: tuple[int, int] | None = None, num_examples: int = 0
                   ) -> Callable[..., tuple[TrainState, Metrics]]:
    """`train_epoch(state, inputs [N, ...], key[, labeled]) -> (state, metrics)`, not jitted.

    `objective(params, x [B, D], key, step) -> {term: [B]}` is a family's (`step`: the
    optimizer step before this update, for warm-ups). inputs are uint8 images, preprocessed
    per batch under `binarize`, or with `binarize=None` float model inputs used as they are
    (e.g. the codes of frozen layers), or prepared by a function `binarize(batch, key)`.
    The epoch visits floor(N / batch_size) batches of a
    fresh permutation (the remainder is dropped, a different one every epoch). Metrics are
    means over the epoch's steps. With `num_examples`, only the first num_examples rows of
    inputs are examples (the rest is the padding of a set split over devices by
    `parallel.shard_rows`), and N is num_examples.
    With `labeled_batch` = (num_classes, per_class), every step also draws a class-balanced
    batch (`balanced_batches`) from `labeled` = (inputs [M, ...], labels [M]), prepared the
    same way, and calls `objective(params, x, key, step, x_labeled, y_labeled)`.
    With a mesh, every batch is split over the `data` axis (see aevb/run/parallel.py); the
    numbers are those of one device, up to float rounding.
    """
    prepare = _prepare(binarize)

    def train_step(state: TrainState, inputs: jax.Array, key: jax.Array, extra=()):
        bin_key, model_key = jax.random.split(key)
        x = prepare(parallel.shard_batch(inputs, mesh), bin_key)
        if extra:  # the labeled batch's own key, leaving the unlabeled keys as they were
            extra = (prepare(parallel.shard_batch(extra[0], mesh), jax.random.fold_in(key, 1)),
                     parallel.shard_batch(extra[1], mesh))

        def loss_fn(params):
            terms = objective(params, x, model_key, state.step, *extra)
            return jnp.mean(terms["loss"]), terms

        return apply_gradients(state, tx, loss_fn)

    def train_epoch(state: TrainState, inputs: jax.Array, key: jax.Array, labeled=None):
        perm_key, step_key = jax.random.split(key)
        n = num_examples or inputs.shape[0]
        num_steps = n // batch_size
        perm = jax.random.permutation(perm_key, n)
        batches = perm[:num_steps * batch_size].reshape(num_steps, batch_size)
        step_keys = jax.random.split(step_key, num_steps)  # one vectorized draw per epoch
        if labeled_batch is None:
            body = lambda s, b: train_step(s, inputs[b[0]], b[1])
            state, metrics = jax.lax.scan(body, state, (batches, step_keys))
        else:
            picks = balanced_batches(jax.random.fold_in(key, 1), labeled[1], *labeled_batch,
                                     num_steps)
            body = lambda s, b: train_step(s, inputs[b[0]], b[1],
                                           (labeled[0][b[2]], labeled[1][b[2]]))
            state, metrics = jax.lax.scan(body, state, (batches, step_keys, picks))
        return state, jax.tree.map(jnp.mean, metrics)

    return train_epoch


def make_train_epoch(objective: Callable[..., Metrics],
                     tx: optax.GradientTransformation, batch_size: int,
                     binarize: str | Prepare | None, mesh: Mesh | None = None,
                     labeled_batch: tuple[int, int] | None = None, num_examples: int = 0
                     ) -> Callable[..., tuple[TrainState, Metrics]]:
    """`epoch_function` compiled once; the incoming state is donated (its buffers reused)."""
    train_epoch = epoch_function(objective, tx, batch_size, binarize, mesh, labeled_batch,
                                 num_examples)
    if mesh is None:
        return jax.jit(train_epoch, donate_argnums=0)
    return jax.jit(train_epoch, donate_argnums=0, out_shardings=parallel.replicated(mesh))
