"""The variational autoencoder's modules (Kingma & Welling 2014): a Gaussian encoder q(z|x), a
Bernoulli or Gaussian decoder p(x|z), and the VAE that joins any encoder and decoder.
Modules return distributions (`distributions.py`), never losses.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from aevb.models.distributions import Bernoulli, Gaussian
from aevb.models.layers import KERNEL_INITS, MIN_LOG_VAR, MLP, pixel_distribution


class GaussianEncoder(nn.Module):
    """Recognition model q(z|x) = N(mean, diag(exp(log_var))): x [..., D] -> Gaussian [..., L].

    Mean and log-variance come from one dense layer of width 2L (one matmul instead of two).
    """

    hidden_sizes: Sequence[int]
    latent_dim: int
    activation: str = "tanh"
    kernel_init: str = "lecun_normal"

    @nn.compact
    def __call__(self, x: jax.Array) -> Gaussian:
        h = MLP(self.hidden_sizes, self.activation, self.kernel_init, name="mlp")(x)
        out = nn.Dense(2 * self.latent_dim, kernel_init=KERNEL_INITS[self.kernel_init],
                       name="mean_log_var")(h)
        mean, log_var = jnp.split(out, 2, axis=-1)
        return Gaussian(mean, log_var)

    def first_layer_kernel(self) -> jax.Array:
        """The first dense kernel [D, H] (mean_log_var's without hidden layers)."""
        params = self.variables["params"]
        return (params["mlp"]["hidden_0"] if self.hidden_sizes
                else params["mean_log_var"])["kernel"]


class PosteriorMean(GaussianEncoder):
    """The mean of q(z|x) [..., L]: a VAE's encoder as a feature extractor (same parameters)."""

    def __call__(self, x: jax.Array) -> jax.Array:  # type: ignore[override]
        return super().__call__(x).mean()


class Decoder(nn.Module):
    """Generative model p(x|z): z [..., L] -> Bernoulli [..., D] or Gaussian [..., D].

    The Gaussian's mean is squashed into (0, 1) by a sigmoid, as pixel values are. Its
    log-variance is predicted per pixel and per code (a pixel of the background can be
    certain where a pixel of an edge is not, which one learned variance per pixel could not
    express) and kept above `min_log_var` by a softplus: `min_log_var + softplus(raw -
    min_log_var)`. A density on dequantized pixels then stays bounded where the data are
    constant (a pixel that is always 0 is uniform on [0, 1/256) after dequantization).
    """

    hidden_sizes: Sequence[int]
    output_dim: int
    likelihood: str = "bernoulli"
    activation: str = "tanh"
    kernel_init: str = "lecun_normal"
    min_log_var: float = MIN_LOG_VAR

    @nn.compact
    def __call__(self, z: jax.Array) -> Bernoulli | Gaussian:
        h = MLP(self.hidden_sizes, self.activation, self.kernel_init, name="mlp")(z)
        init = KERNEL_INITS[self.kernel_init]
        if self.likelihood == "bernoulli":
            return Bernoulli(nn.Dense(self.output_dim, kernel_init=init, name="logits")(h))
        out = nn.Dense(2 * self.output_dim, kernel_init=init, name="mean_log_var")(h)
        return pixel_distribution(self.likelihood, *jnp.split(out, 2, axis=-1),
                                  min_log_var=self.min_log_var)


@flax.struct.dataclass
class VAEOutput:
    """A VAE's forward pass: q(z|x) [B, L], the sample z [B, L] and p(x|z) [B, D]."""

    posterior: Gaussian
    z: jax.Array
    likelihood: Bernoulli | Gaussian


class VAE(nn.Module):
    """The variational autoencoder of Kingma & Welling (2014): encoder, sampler, decoder.

    `encoder` maps x [..., D] to q(z|x) [..., L] and `decoder` z [..., L] to p(x|z) [..., D]
    (`aevb/architectures/` builds both). `__call__(x [B, D], key)` -> VAEOutput.
    """

    encoder: nn.Module
    decoder: nn.Module

    def encode(self, x: jax.Array) -> Gaussian:
        """x [..., D] -> q(z|x) [..., L]."""
        return self.encoder(x)

    def decode(self, z: jax.Array) -> Bernoulli | Gaussian:
        """z [..., L] -> p(x|z) [..., D]."""
        return self.decoder(z)

    def generate(self, z: jax.Array) -> jax.Array:
        """Decoder mean E[x|z] in [0, 1] for codes z [..., L]: pictures of samples."""
        return self.decode(z).mean()

    def __call__(self, x: jax.Array, key: jax.Array) -> VAEOutput:
        posterior = self.encode(x)
        z = posterior.sample(key)
        return VAEOutput(posterior=posterior, z=z, likelihood=self.decode(z))

    def first_layer_kernel(self) -> jax.Array:
        """The encoder's first kernel (dense [D, H] or conv [k, k, C, F]): filter pictures."""
        return self.encoder.first_layer_kernel()


def dense_vae(hidden_sizes: Sequence[int], latent_dim: int, output_dim: int,
              likelihood: str = "bernoulli", activation: str = "tanh") -> VAE:
    """The dense VAE D -> hidden_sizes -> L (mean, log-variance) -> reversed -> D."""
    return VAE(GaussianEncoder(tuple(hidden_sizes), latent_dim, activation),
               Decoder(tuple(reversed(hidden_sizes)), output_dim, likelihood, activation))
