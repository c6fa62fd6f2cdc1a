"""Shared layers and names: activations, kernel initialisers, the dense stack (`MLP`) and the
pixel distribution every decoder ends with.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from aevb.models.distributions import Bernoulli, Gaussian

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": jnp.tanh,
    "relu": nn.relu,
    "elu": nn.elu,
    "gelu": nn.gelu,
    "softplus": nn.softplus,
    "sigmoid": nn.sigmoid,
}


DECODERS = ("bernoulli", "gaussian")


# `model.kernel_init`: Flax's default (variance 1/fan_in, truncated normal), or Glorot &
# Bengio's (2010) uniform heuristic, which the IWAE paper used.
KERNEL_INITS = {"lecun_normal": nn.initializers.lecun_normal(),
                "glorot_uniform": nn.initializers.glorot_uniform()}


CODE_ACTIVATIONS = ("linear", *ACTIVATIONS)


OUTPUT_ACTIVATIONS = ("sigmoid", "linear")


# The Gaussian decoder's default log-variance floor: log((1/256)^2 / 12), the variance of
# the dequantization noise (`model.decoder_min_log_var`).
MIN_LOG_VAR = -13.58


def get_activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """Looks up an activation by its config name (`model.activation`); `linear` is identity."""
    if name == "linear":
        return lambda x: x
    if name not in ACTIVATIONS:
        raise ValueError(f"model.activation={name!r}; allowed: {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


class MLP(nn.Module):
    """A stack of dense layers, each followed by the activation: [..., D_in] -> [..., H_last]."""

    hidden_sizes: Sequence[int]
    activation: str = "tanh"
    kernel_init: str = "lecun_normal"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = get_activation(self.activation)
        for i, width in enumerate(self.hidden_sizes):
            x = act(nn.Dense(width, kernel_init=KERNEL_INITS[self.kernel_init],
                             name=f"hidden_{i}")(x))
        return x


def pixel_distribution(likelihood: str, logits: jax.Array, raw_log_var: jax.Array | None = None,
                       min_log_var: float = MIN_LOG_VAR) -> Bernoulli | Gaussian:
    """A decoder's output layer [..., D] (and [..., D] more for a Gaussian) as p(x|z).

    Bernoulli: `logits`. Gaussian: mean sigmoid(`logits`), log-variance `min_log_var +
    softplus(raw_log_var - min_log_var)` (see `Decoder`). Shared by every architecture.
    """
    if likelihood == "bernoulli":
        return Bernoulli(logits)
    return Gaussian(nn.sigmoid(logits), min_log_var + nn.softplus(raw_log_var - min_log_var))
