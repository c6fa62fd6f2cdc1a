"""The train state, the optimizers, and one optimizer step (`apply_gradients`).
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

from aevb.training import schedules

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
        # tx.init compiled as one program (persistently cached), not one op per leaf
        return cls(step=jnp.zeros((), jnp.int32), params=params,
                   opt_state=jax.jit(tx.init)(params))


def num_parameters(params: Any) -> int:
    """The number of scalars in a parameter tree."""
    return sum(x.size for x in jax.tree.leaves(params))


def normalized_gradients() -> optax.GradientTransformation:
    """Each parameter array's gradient divided by its L2 norm (+ 1e-7): the `AdamNormGrad`
    of the VampPrior's and Exemplar-VAE's code, Adam on unit-norm gradients per tensor."""
    return optax.stateless(lambda updates, _: jax.tree.map(
        lambda g: g / (jnp.linalg.norm(g) + 1e-7), updates))


def _optimizer(learning_rate, scale, name: str, weight_decay: float,
               adam_eps: float, normalize: bool = False) -> optax.GradientTransformation:
    rate = learning_rate * scale
    if name == "adamw":
        base = optax.adamw(rate, eps=adam_eps, weight_decay=weight_decay)
    else:
        base = {"adam": functools.partial(optax.adam, eps=adam_eps), "adagrad": optax.adagrad,
                "sgd": optax.sgd, "rmsprop": optax.rmsprop}[name](rate)
        if weight_decay:
            base = optax.chain(optax.add_decayed_weights(weight_decay), base)
    return optax.chain(normalized_gradients(), base) if normalize else base


def make_optimizer(section: ml_collections.ConfigDict,
                   total_steps: int = 0) -> optax.GradientTransformation:
    """Optax optimizer from a config section (`train` or `classifier`): `optimizer`,
    `learning_rate` (the peak), `lr_schedule` over `total_steps` steps
    (`aevb/training/schedules.py`),
    `weight_decay` (decoupled for adamw, else L2 added to the gradients), `adam_eps`
    (adam and adamw) and, in `train`, `normalize_gradients` (`normalized_gradients` first).

    The peak and the schedule's factor live in the optimizer state
    (`opt_state.hyperparams['learning_rate']` and `['scale']`, through
    `optax.inject_hyperparams`): trials with different peaks share one compiled, vmapped
    program, a resumed run continues the schedule from the step in its checkpoint, and
    `current_learning_rate` reads the rate in force.
    """
    factory = optax.inject_hyperparams(
        _optimizer, static_args=("name", "weight_decay", "adam_eps", "normalize"))
    return factory(learning_rate=section.learning_rate,
                   scale=schedules.shape(section.lr_schedule, total_steps),
                   name=section.optimizer, weight_decay=section.weight_decay,
                   adam_eps=section.adam_eps,
                   normalize=bool(getattr(section, "normalize_gradients", False)))


def current_learning_rate(opt_state: Any) -> jax.Array | None:
    """The rate of the last update (peak x schedule factor) of a `make_optimizer` state;
    None for other optimizer states (e.g. a frozen encoder's `multi_transform`)."""
    hyperparams = getattr(opt_state, "hyperparams", None)
    if hyperparams is None:
        return None
    return hyperparams["learning_rate"] * hyperparams["scale"]


def apply_gradients(state: TrainState, tx: optax.GradientTransformation,
                    loss_fn: Callable[[Any], tuple[jax.Array, Metrics]]
                    ) -> tuple[TrainState, Metrics]:
    """One optimizer step on `loss_fn(params) -> (scalar loss, per-example terms {k: [B]})`.

    Returns the new state and the batch means of the terms, with `learning_rate` (the rate
    this step applied) when the optimizer keeps it in its state (`make_optimizer`).
    """
    (_, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {k: jnp.mean(v) for k, v in terms.items()}
    rate = current_learning_rate(opt_state)
    if rate is not None:
        metrics["learning_rate"] = rate
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics
