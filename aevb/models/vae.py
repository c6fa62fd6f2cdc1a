"""The variational autoencoder's modules (Kingma & Welling 2014): its heads on an
architecture's trunks, a Gaussian q(z|x) (`GaussianEncoder`) and a Bernoulli or Gaussian
p(x|z) (`PixelDecoder`), and the VAE that joins them, with its prior p(z): N(0, I) or the
VampPrior (Tomczak & Welling 2018). Modules return distributions (`distributions.py`),
never losses.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from aevb.models.distributions import Bernoulli, Gaussian, GaussianMixture, StandardNormal
from aevb.models.layers import (
    KERNEL_INITS,
    MIN_LOG_VAR,
    MLP,
    PIXEL_OUTPUTS,
    MLPDecoder,
    TrunkHead,
    pixel_distribution,
)

PRIORS = ("standard", "vampprior")
# The VampPrior's pseudo-inputs start at N(0.05, 0.01^2) per pixel, as in the authors' code
# (jmtomczak/vae_vampprior: `pseudoinputs_mean`, `pseudoinputs_std`).
PSEUDO_INPUT_MEAN, PSEUDO_INPUT_STD = 0.05, 0.01


def _pseudo_input_init(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    return PSEUDO_INPUT_MEAN + PSEUDO_INPUT_STD * jax.random.normal(key, shape)


class GaussianEncoder(TrunkHead):
    """Recognition model q(z|x) = N(mean, diag(exp(log_var))): x [..., D] -> Gaussian [..., L].

    An encoder trunk (x [..., D] -> features [..., F]), then one dense layer of width 2L
    (`mean_log_var`: one matmul for the mean and the log-variance). With `log_var_clip` =
    (low, high) the log-variance is clipped to [low, high] (`model.encoder_log_var_clip`;
    the VampPrior and Exemplar-VAE code clip it to [-6, 2] with a hard tanh): no
    gradient flows through a clipped unit.
    """

    trunk: nn.Module
    latent_dim: int
    kernel_init: str = "lecun_normal"
    log_var_clip: tuple[float, ...] = ()

    @nn.compact
    def __call__(self, x: jax.Array) -> Gaussian:
        out = nn.Dense(2 * self.latent_dim, kernel_init=KERNEL_INITS[self.kernel_init],
                       name="mean_log_var")(self.trunk(x))
        mean, log_var = jnp.split(out, 2, axis=-1)
        if self.log_var_clip:
            log_var = jnp.clip(log_var, *self.log_var_clip)
        return Gaussian(mean, log_var)

    def first_layer_kernel(self) -> jax.Array:
        """The trunk's first kernel (dense [D, H] or conv [k, k, C, F]); mean_log_var's
        [D, 2L] when the trunk has no layer."""
        params = self.variables["params"]
        if self.trunk.name in params:
            return self.trunk.first_layer_kernel()
        return params["mean_log_var"]["kernel"]


class PosteriorMean(GaussianEncoder):
    """The mean of q(z|x) [..., L]: a VAE's encoder as a feature extractor (same parameters)."""

    def __call__(self, x: jax.Array) -> jax.Array:  # type: ignore[override]
        return super().__call__(x).mean()


class PixelDecoder(TrunkHead):
    """Generative model p(x|z): z [..., L] -> Bernoulli [..., D] or Gaussian [..., D].

    A decoder trunk gives `PIXEL_OUTPUTS[likelihood]` outputs per pixel: the Bernoulli's
    logits, or the Gaussian's mean (squashed into (0, 1) by a sigmoid, as pixel values are)
    and log-variance. The log-variance is predicted per pixel and per code (a pixel of the
    background can be certain where a pixel of an edge is not, which one learned variance
    per pixel could not express) and kept above `min_log_var` by a softplus: `min_log_var
    + softplus(raw - min_log_var)`. A density on dequantized pixels then stays bounded
    where the data are constant (a pixel that is always 0 is uniform on [0, 1/256) after
    dequantization).
    """

    trunk: nn.Module
    likelihood: str = "bernoulli"
    min_log_var: float = MIN_LOG_VAR

    @nn.compact
    def __call__(self, z: jax.Array) -> Bernoulli | Gaussian:
        return pixel_distribution(self.likelihood, *self.trunk(z),
                                  min_log_var=self.min_log_var)


@flax.struct.dataclass
class VAEOutput:
    """A VAE's forward pass: q(z|x) [B, L], the sample z [B, L] and p(x|z) [B, D]."""

    posterior: Gaussian
    z: jax.Array
    likelihood: Bernoulli | Gaussian


class VAE(nn.Module):
    """The variational autoencoder of Kingma & Welling (2014): encoder, sampler, decoder,
    prior.

    `encoder` maps x [..., D] to q(z|x) [..., L] and `decoder` z [..., L] to p(x|z) [..., D]
    (a `GaussianEncoder` and a `PixelDecoder` on the trunks of `aevb/architectures/`).
    `__call__(x [B, D], key)` -> VAEOutput.

    `prior`: 'standard', p(z) = N(0, I); or 'vampprior' (Tomczak & Welling 2018), p(z) =
    (1/K) sum_k q(z|u_k), the encoder's posteriors at K = `num_pseudo_inputs` learned
    pseudo-inputs u_k [K, D] (`input_dim` = D), the parameter `pseudo_inputs` clipped to
    [0, 1] (the authors' hard tanh: pixels' range, no gradient beyond it).
    """

    encoder: nn.Module
    decoder: nn.Module
    prior: str = "standard"
    num_pseudo_inputs: int = 0
    input_dim: int = 0

    def setup(self) -> None:
        if self.prior == "vampprior":
            self.pseudo_inputs = self.param("pseudo_inputs", _pseudo_input_init,
                                            (self.num_pseudo_inputs, self.input_dim))

    def encode(self, x: jax.Array) -> Gaussian:
        """x [..., D] -> q(z|x) [..., L]."""
        return self.encoder(x)

    def decode(self, z: jax.Array) -> Bernoulli | Gaussian:
        """z [..., L] -> p(x|z) [..., D]."""
        return self.decoder(z)

    def prior_distribution(self) -> StandardNormal | GaussianMixture:
        """p(z) over [L]: N(0, I), or the mixture of the posteriors at the pseudo-inputs."""
        if self.prior == "standard":
            return StandardNormal(self.encoder.latent_dim)
        components = self.encode(jnp.clip(self.pseudo_inputs, 0.0, 1.0))  # [K, L]
        return GaussianMixture(components.loc, components.log_var)

    def generate(self, z: jax.Array) -> jax.Array:
        """Decoder mean E[x|z] in [0, 1] for codes z [..., L]: pictures of samples."""
        return self.decode(z).mean()

    def __call__(self, x: jax.Array, key: jax.Array) -> VAEOutput:
        posterior = self.encode(x)
        z = posterior.sample(key)
        if self.is_initializing():  # creates the pseudo-inputs' parameters
            self.prior_distribution()
        return VAEOutput(posterior=posterior, z=z, likelihood=self.decode(z))

    def first_layer_kernel(self) -> jax.Array:
        """The encoder's first kernel (dense [D, H] or conv [k, k, C, F]): filter pictures."""
        return self.encoder.first_layer_kernel()


def dense_vae(hidden_sizes: Sequence[int], latent_dim: int, output_dim: int,
              likelihood: str = "bernoulli", activation: str = "tanh") -> VAE:
    """The dense VAE D -> hidden_sizes -> L (mean, log-variance) -> reversed -> D (the
    modules `model.architecture='mlp'` builds)."""
    channels, output_name = PIXEL_OUTPUTS[likelihood]
    return VAE(GaussianEncoder(MLP(tuple(hidden_sizes), activation, name="mlp"), latent_dim),
               PixelDecoder(MLPDecoder(tuple(reversed(hidden_sizes)), output_dim, channels,
                                       activation, output_name=output_name), likelihood))
