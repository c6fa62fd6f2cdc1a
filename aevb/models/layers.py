"""Shared layers and names: activations, kernel initialisers, the dense stack (`MLP`), the
dense decoder (`MLPDecoder`), the base of a family's head on an architecture's trunk
(`TrunkHead`) and the pixel distribution every decoder ends with.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from aevb.models import losses
from aevb.models.distributions import Bernoulli, Gaussian

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": jnp.tanh,
    "relu": nn.relu,
    "elu": nn.elu,
    "gelu": nn.gelu,
    "softplus": losses.softplus,  # jax.nn.softplus's value, a cheaper gradient
    "sigmoid": nn.sigmoid,
}


DECODERS = ("bernoulli", "gaussian")


# `model.kernel_init`: Flax's default (variance 1/fan_in, truncated normal), or Glorot &
# Bengio's (2010) uniform heuristic, which the IWAE paper used.
KERNEL_INITS = {"lecun_normal": nn.initializers.lecun_normal(),
                "glorot_uniform": nn.initializers.glorot_uniform()}


# `model.activation='gated'`: each hidden dense layer of an mlp trunk is gated, h = (W1 x +
# b1) * sigmoid(W2 x + b2) (Dauphin et al. 2017; the VampPrior's and Exemplar-VAE's dense
# layers), W1 and W2 one matmul of twice the width.
GATED = "gated"


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


def broadcast_add(a: jax.Array, b: jax.Array) -> jax.Array:
    """a [B, H] + b [..., B, H] -> [..., B, H], a broadcast over b's leading axes.

    The value of `a + b`. a's gradient, the sum of the output's gradient over those axes,
    is formed by adding its slices one by one instead of by XLA's reduce: on the CPU that
    reduce over a short leading axis of a long one ([10, 50000] -> [50000]: M2's encoding
    of the 10 classes) takes ~50 times as long as the adds. Other shapes: plain `a + b`.
    """
    if a.ndim != 2 or b.shape[-2:] != a.shape:
        return a + b
    return _add_over_leading_axes(a, b)


@jax.custom_vjp
def _add_over_leading_axes(a: jax.Array, b: jax.Array) -> jax.Array:
    return a + b


def _add_fwd(a: jax.Array, b: jax.Array) -> tuple[jax.Array, None]:
    return a + b, None


def _add_bwd(_: None, g: jax.Array) -> tuple[jax.Array, jax.Array]:
    slices = g.reshape(-1, *g.shape[-2:])
    total = slices[0]
    for i in range(1, slices.shape[0]):
        total = total + slices[i]
    return total, g


_add_over_leading_axes.defvjp(_add_fwd, _add_bwd)


class MLP(nn.Module):
    """A stack of dense layers (`hidden_<i>`), each followed by the activation (the last by
    `top_activation`, if given), or gated (`GATED`): [..., D_in] -> [..., H_last]; with
    `preactivation`, the pair (output, the last layer's pre-activation). No layers: the
    identity."""

    hidden_sizes: Sequence[int]
    activation: str = "tanh"
    kernel_init: str = "lecun_normal"
    top_activation: str | None = None
    preactivation: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array | tuple[jax.Array, jax.Array]:
        n = len(self.hidden_sizes)
        pre = x
        for i, width in enumerate(self.hidden_sizes):
            top = i == n - 1 and self.top_activation is not None
            gated = self.activation == GATED and not top
            pre = nn.Dense(2 * width if gated else width,
                           kernel_init=KERNEL_INITS[self.kernel_init], name=f"hidden_{i}")(x)
            if gated:
                value, gate = jnp.split(pre, 2, axis=-1)
                x = value * nn.sigmoid(gate)
            else:
                x = get_activation(self.top_activation if top else self.activation)(pre)
        return (x, pre) if self.preactivation else x

    def first_layer_kernel(self) -> jax.Array:
        """hidden_0's kernel [D_in, H_0]: filter pictures."""
        return self.variables["params"]["hidden_0"]["kernel"]


class MLPDecoder(nn.Module):
    """A dense decoder: z [..., J] -> `channels` outputs per pixel, a tuple of `channels`
    arrays [..., output_dim] (no activation on them): the dense layers of `hidden_sizes`
    (`mlp`), then one dense layer of channels x output_dim (`output_name`), split.

    It `shares_scope`: under a `TrunkHead` its layers sit in the head's own scope."""

    hidden_sizes: Sequence[int]
    output_dim: int
    channels: int = 1
    activation: str = "tanh"
    kernel_init: str = "lecun_normal"
    output_name: str = "output"
    shares_scope = True

    @nn.compact
    def __call__(self, z: jax.Array) -> tuple[jax.Array, ...]:
        h = MLP(self.hidden_sizes, self.activation, self.kernel_init, name="mlp")(z)
        out = nn.Dense(self.channels * self.output_dim,
                       kernel_init=KERNEL_INITS[self.kernel_init], name=self.output_name)(h)
        return tuple(jnp.split(out, self.channels, axis=-1))


class TrunkHead(nn.Module):
    """The base of a family's head (its own layers) on an architecture's trunk, a field of
    the subclass named `trunk`.

    The trunk's parameters sit under the name its architecture gave it (`mlp`, `body`), or,
    for a trunk that `shares_scope` (one whose layers sit beside the head's, as a dense
    decoder's output layer does), in the head's own scope. A container that is not a head
    (the classifier, an autoencoder of two trunks) names a trunk after its own field.
    """

    preserve_adopted_names = True

    def setup(self) -> None:
        if getattr(self.trunk, "shares_scope", False):
            nn.share_scope(self, self.trunk)


def lower_layer_params(module: nn.Module, params: Any, input_width: int) -> Any:
    """{'params': the entries of `params` that `module` has}: the lower layers of a trunk
    (or of a stack) exported under the names they have in it. `module` maps
    [..., input_width]; only its parameters' names are computed, no values."""
    names = jax.eval_shape(module.init, jax.random.key(0),
                           jnp.zeros((1, input_width), jnp.float32))["params"]
    return {"params": {name: params[name] for name in names}}


# Per likelihood: the decoder's outputs per pixel (its trunk's `channels`) and the name of a
# dense output layer (`MLPDecoder.output_name`).
PIXEL_OUTPUTS = {"bernoulli": (1, "logits"), "gaussian": (2, "mean_log_var")}


def pixel_distribution(likelihood: str, logits: jax.Array, raw_log_var: jax.Array | None = None,
                       min_log_var: float = MIN_LOG_VAR) -> Bernoulli | Gaussian:
    """A decoder's outputs [..., D] (and [..., D] more for a Gaussian) as p(x|z).

    Bernoulli: `logits`. Gaussian: mean sigmoid(`logits`), log-variance `min_log_var +
    softplus(raw_log_var - min_log_var)` (see `vae.PixelDecoder`). Shared by every
    architecture.
    """
    if likelihood == "bernoulli":
        return Bernoulli(logits)
    return Gaussian(nn.sigmoid(logits), min_log_var + losses.softplus(raw_log_var - min_log_var))
