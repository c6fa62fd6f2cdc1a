"""Flax (Linen) modules: encoders, decoders and the variational autoencoder.

Modules return distribution parameters, never losses: the losses live in
`aevb/losses.py` and the objective that ties the two together in `aevb/objectives.py`.
Images enter flattened, as float arrays of shape [..., D] with D = H * W * C.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": jnp.tanh,
    "relu": nn.relu,
    "elu": nn.elu,
    "gelu": nn.gelu,
    "softplus": nn.softplus,
    "sigmoid": nn.sigmoid,
}
DECODERS = ("bernoulli", "gaussian")


def get_activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """Looks up an activation by its config name (`model.activation`)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"model.activation={name!r}; allowed: {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


class MLP(nn.Module):
    """A stack of dense layers, each followed by the activation: [..., D_in] -> [..., H_last]."""

    hidden_sizes: Sequence[int]
    activation: str = "tanh"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = get_activation(self.activation)
        for i, width in enumerate(self.hidden_sizes):
            x = act(nn.Dense(width, name=f"hidden_{i}")(x))
        return x


class GaussianEncoder(nn.Module):
    """Recognition model q(z|x) = N(mean, diag(exp(log_var))).

    x [..., D] -> (mean [..., L], log_var [..., L]). Mean and log-variance come from one
    dense layer of width 2L (one matmul instead of two), split in halves.
    """

    hidden_sizes: Sequence[int]
    latent_dim: int
    activation: str = "tanh"

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = MLP(self.hidden_sizes, self.activation, name="mlp")(x)
        out = nn.Dense(2 * self.latent_dim, name="mean_log_var")(h)
        mean, log_var = jnp.split(out, 2, axis=-1)
        return mean, log_var


class Decoder(nn.Module):
    """Generative model p(x|z).

    z [..., L] -> for `bernoulli`: logits [..., D]; for `gaussian`: (mean [..., D],
    log_var [..., D]) with the mean squashed into (0, 1) by a sigmoid, as pixel values are.
    """

    hidden_sizes: Sequence[int]
    output_dim: int
    likelihood: str = "bernoulli"
    activation: str = "tanh"

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array | tuple[jax.Array, jax.Array]:
        h = MLP(self.hidden_sizes, self.activation, name="mlp")(z)
        if self.likelihood == "bernoulli":
            return nn.Dense(self.output_dim, name="logits")(h)
        if self.likelihood == "gaussian":
            out = nn.Dense(2 * self.output_dim, name="mean_log_var")(h)
            mean_logit, log_var = jnp.split(out, 2, axis=-1)
            return nn.sigmoid(mean_logit), log_var
        raise ValueError(f"model.decoder={self.likelihood!r}; allowed: {list(DECODERS)}")


def reparameterize(key: jax.Array, mean: jax.Array, log_var: jax.Array,
                   num_samples: int | None = None) -> jax.Array:
    """z = mean + sigma * eps with eps ~ N(0, I): a sample whose gradient reaches mean and log_var.

    mean, log_var [..., L] -> z [..., L], or [num_samples, ..., L] when num_samples is given.
    """
    shape = mean.shape if num_samples is None else (num_samples, *mean.shape)
    eps = jax.random.normal(key, shape, mean.dtype)
    return mean + jnp.exp(0.5 * log_var) * eps


class VAE(nn.Module):
    """The variational autoencoder of Kingma & Welling (2014): encoder, sampler, decoder.

    `__call__(x, key)` returns a dict of distribution parameters for a batch x [B, D]:
    `mean`, `log_var` [B, L] of q(z|x), the sample `z` [B, L], and the decoder's output
    (`logits` [B, D], or `x_mean`, `x_log_var` [B, D]). The decoder mirrors the encoder's
    hidden widths unless `decoder_hidden_sizes` is given.
    """

    hidden_sizes: Sequence[int]
    latent_dim: int
    output_dim: int
    likelihood: str = "bernoulli"
    activation: str = "tanh"
    decoder_hidden_sizes: Sequence[int] | None = None

    def setup(self) -> None:
        self.encoder = GaussianEncoder(self.hidden_sizes, self.latent_dim, self.activation)
        dec_hidden = (tuple(reversed(self.hidden_sizes)) if self.decoder_hidden_sizes is None
                      else self.decoder_hidden_sizes)
        self.decoder = Decoder(dec_hidden, self.output_dim, self.likelihood, self.activation)

    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """x [..., D] -> (mean, log_var) [..., L]."""
        return self.encoder(x)

    def decode(self, z: jax.Array) -> dict[str, jax.Array]:
        """z [..., L] -> decoder distribution parameters, each [..., D]."""
        out = self.decoder(z)
        if self.likelihood == "bernoulli":
            return {"logits": out}
        return {"x_mean": out[0], "x_log_var": out[1]}

    def generate(self, z: jax.Array) -> jax.Array:
        """Decoder mean E[x|z] in [0, 1] for codes z [..., L]: pictures of samples and manifolds."""
        out = self.decode(z)
        return nn.sigmoid(out["logits"]) if "logits" in out else out["x_mean"]

    def __call__(self, x: jax.Array, key: jax.Array) -> dict[str, jax.Array]:
        mean, log_var = self.encode(x)
        z = reparameterize(key, mean, log_var)
        return {"mean": mean, "log_var": log_var, "z": z, **self.decode(z)}
