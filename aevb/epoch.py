"""The train state, the optimizers, and one compiled epoch: the step every regime runs.

A whole epoch is one compiled program: a `lax.scan` over batches gathered from the
on-device training set by a permutation drawn on the device, so Python dispatches once per
epoch. Keys: the epoch's key is split into the permutation key and one key per step, and
each step's key into the binarization key and the objective's key (noise, sampling).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh

from aevb import data as data_lib
from aevb import parallel

OPTIMIZERS = ("adam", "adamw", "adagrad", "sgd", "rmsprop")
Metrics = dict[str, jax.Array]


class TrainState(flax.struct.PyTreeNode):
    """Everything that changes during training and goes into a checkpoint."""

    step: jax.Array
    params: Any
    opt_state: Any

    @classmethod
    def create(cls, params: Any, tx: optax.GradientTransformation) -> TrainState:
        """Step 0: `params` and the optimizer's initial state for them."""
        return cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))


def num_parameters(params: Any) -> int:
    """The number of scalars in a parameter tree."""
    return sum(x.size for x in jax.tree.leaves(params))


def _optimizer(learning_rate, name: str, weight_decay: float) -> optax.GradientTransformation:
    if name == "adamw":
        return optax.adamw(learning_rate, weight_decay=weight_decay)
    base = {"adam": optax.adam, "adagrad": optax.adagrad, "sgd": optax.sgd,
            "rmsprop": optax.rmsprop}[name](learning_rate)
    return optax.chain(optax.add_decayed_weights(weight_decay), base) if weight_decay else base


def make_optimizer(section: ml_collections.ConfigDict,
                   injectable: bool = False) -> optax.GradientTransformation:
    """Optax optimizer from a config section's `optimizer`, `learning_rate`, `weight_decay`
    (`train` or `classifier`). Weight decay is decoupled (adamw) or L2 added to gradients.

    `injectable`: the learning rate lives in the optimizer state
    (`opt_state.hyperparams['learning_rate']`), so trials with different rates can share
    one compiled, vmapped program.
    """
    factory = functools.partial(_optimizer, name=section.optimizer,
                                weight_decay=section.weight_decay)
    if injectable:
        return optax.inject_hyperparams(factory, static_args=("name", "weight_decay"))(
            learning_rate=section.learning_rate)
    return factory(section.learning_rate)


def preprocess(images: jax.Array, binarize: str, key: jax.Array | None) -> jax.Array:
    """uint8 pixels [B, D] -> float32 model input [B, D] under `data.binarize`."""
    return data_lib.binarize(data_lib.to_unit_interval(images), binarize, key)


def apply_gradients(state: TrainState, tx: optax.GradientTransformation,
                    loss_fn: Callable[[Any], tuple[jax.Array, Metrics]]
                    ) -> tuple[TrainState, Metrics]:
    """One optimizer step on `loss_fn(params) -> (scalar loss, per-example terms {k: [B]})`.

    Returns the new state and the batch means of the terms.
    """
    (_, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {k: jnp.mean(v) for k, v in terms.items()}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics


def epoch_function(objective: Callable[[Any, jax.Array, jax.Array], Metrics],
                   tx: optax.GradientTransformation, batch_size: int, binarize: str | None,
                   mesh: Mesh | None = None) -> Callable[..., tuple[TrainState, Metrics]]:
    """`train_epoch(state, inputs [N, D], key) -> (state, metrics)`, not yet jitted.

    inputs are uint8 images, preprocessed per batch under `binarize`, or with
    `binarize=None` float model inputs used as they are (e.g. the codes of frozen layers).
    The epoch visits floor(N / batch_size) batches of a fresh permutation (the remainder is
    dropped, a different one every epoch). Metrics are means over the epoch's steps.
    With a mesh, every batch is split over the `data` axis (see aevb/parallel.py); the
    numbers are those of one device, up to float rounding.
    """
    def train_step(state: TrainState, inputs: jax.Array, key: jax.Array):
        bin_key, model_key = jax.random.split(key)
        x = parallel.shard_batch(inputs, mesh)
        if binarize is not None:
            x = preprocess(x, binarize, bin_key)

        def loss_fn(params):
            terms = objective(params, x, model_key)
            return jnp.mean(terms["loss"]), terms

        return apply_gradients(state, tx, loss_fn)

    def train_epoch(state: TrainState, inputs: jax.Array, key: jax.Array):
        perm_key, step_key = jax.random.split(key)
        num_steps = inputs.shape[0] // batch_size
        perm = jax.random.permutation(perm_key, inputs.shape[0])
        batches = perm[:num_steps * batch_size].reshape(num_steps, batch_size)
        step_keys = jax.random.split(step_key, num_steps)  # one vectorized draw per epoch

        def body(state, batch):
            idx, key = batch
            return train_step(state, inputs[idx], key)

        state, metrics = jax.lax.scan(body, state, (batches, step_keys))
        return state, jax.tree.map(jnp.mean, metrics)

    return train_epoch


def make_train_epoch(objective: Callable[[Any, jax.Array, jax.Array], Metrics],
                     tx: optax.GradientTransformation, batch_size: int, binarize: str | None,
                     mesh: Mesh | None = None) -> Callable[..., tuple[TrainState, Metrics]]:
    """`epoch_function` compiled once; the incoming state is donated (its buffers reused)."""
    train_epoch = epoch_function(objective, tx, batch_size, binarize, mesh)
    if mesh is None:
        return jax.jit(train_epoch, donate_argnums=0)
    return jax.jit(train_epoch, donate_argnums=0, out_shardings=parallel.replicated(mesh))
