"""Flax (Linen) modules: the dense encoders and decoders, the VAE, the autoencoder and the
classifier.

Modules return distribution parameters (`aevb/distributions.py`) or activations, never
losses: the objectives that score them live with their family in `aevb/families/`.
Images enter flattened, as float arrays of shape [..., D] with D = H * W * C. The VAE and
the classifier take any encoder and decoder; `aevb/architectures/` builds them, dense ones
from this file and convolutional ones from `aevb/conv_models.py`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from aevb.distributions import Bernoulli, Gaussian

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


# ----------------------------------------------------------------------------- the VAE

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


def pixel_distribution(likelihood: str, logits: jax.Array, raw_log_var: jax.Array | None = None,
                       min_log_var: float = MIN_LOG_VAR) -> Bernoulli | Gaussian:
    """A decoder's output layer [..., D] (and [..., D] more for a Gaussian) as p(x|z).

    Bernoulli: `logits`. Gaussian: mean sigmoid(`logits`), log-variance `min_log_var +
    softplus(raw_log_var - min_log_var)` (see `Decoder`). Shared by every architecture.
    """
    if likelihood == "bernoulli":
        return Bernoulli(logits)
    return Gaussian(nn.sigmoid(logits), min_log_var + nn.softplus(raw_log_var - min_log_var))


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


# ----------------------------------------------------------------------------- autoencoders

def dense_forward(x: jax.Array, kernels: Sequence[jax.Array], biases: Sequence[jax.Array],
                  activations: Sequence[str]) -> tuple[jax.Array, jax.Array]:
    """x [..., w_0] through dense layers i (w_i -> w_{i+1}, then activations[i]).

    Returns (output [..., w_n], the last layer's pre-activation [..., w_n]).
    """
    pre = x
    for w, b, act in zip(kernels, biases, activations, strict=True):
        pre = x @ w + b
        x = get_activation(act)(pre)
    return x, pre


@flax.struct.dataclass
class Reconstruction:
    """An autoencoder's forward pass, each [B, ...]: the code and its pre-activation
    [B, J], the output layer before its activation `logits` and the reconstruction
    `x_hat` [B, D]."""

    code: jax.Array
    code_preactivation: jax.Array
    logits: jax.Array
    x_hat: jax.Array


class Autoencoder(nn.Module):
    """A deterministic MLP autoencoder, symmetric around its coding layer.

    Layer widths D -> hidden_sizes... -> code_dim -> reversed(hidden_sizes)... -> D. Every
    layer but the coding and output layers uses `activation`; the coding layer uses
    `code_activation` (sigmoid for a sparse autoencoder, linear for PCA-like codes).

    With `tied_weights` the decoder layer mirroring encoder layer i uses that layer's kernel
    transposed (W' = W^T) and a bias of its own: half the weights of an untied stack.
    Parameters are flat: `encoder_kernel_i`, `encoder_bias_i`, `decoder_bias_i` and, untied,
    `decoder_kernel_i`, with decoder layer i mirroring encoder layer (n - 1 - i).
    """

    hidden_sizes: Sequence[int]
    code_dim: int
    output_dim: int
    activation: str = "relu"
    code_activation: str = "linear"
    output_activation: str = "sigmoid"
    tied_weights: bool = False

    @property
    def widths(self) -> tuple[int, ...]:
        return (self.output_dim, *self.hidden_sizes, self.code_dim)

    @property
    def encoder_activations(self) -> tuple[str, ...]:
        return (self.activation,) * len(self.hidden_sizes) + (self.code_activation,)

    def setup(self) -> None:
        widths = self.widths
        n = len(widths) - 1
        kernel_init = nn.initializers.lecun_normal()
        zeros = nn.initializers.zeros_init()
        self.encoder_kernels = [self.param(f"encoder_kernel_{i}", kernel_init,
                                           (widths[i], widths[i + 1])) for i in range(n)]
        self.encoder_biases = [self.param(f"encoder_bias_{i}", zeros, (widths[i + 1],))
                               for i in range(n)]
        # Decoder layer j maps widths[n - j] -> widths[n - 1 - j], mirroring encoder n - 1 - j.
        self.decoder_biases = [self.param(f"decoder_bias_{j}", zeros, (widths[n - 1 - j],))
                               for j in range(n)]
        if not self.tied_weights:
            self.decoder_kernels = [self.param(f"decoder_kernel_{j}", kernel_init,
                                               (widths[n - j], widths[n - 1 - j]))
                                    for j in range(n)]

    def _decoder_kernels(self) -> list[jax.Array]:
        if self.tied_weights:
            return [w.T for w in reversed(self.encoder_kernels)]
        return self.decoder_kernels

    def encode_with_preactivation(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """x [..., D] -> (code, its pre-activation) [..., code_dim]."""
        return dense_forward(x, self.encoder_kernels, self.encoder_biases,
                             self.encoder_activations)

    def encode(self, x: jax.Array) -> jax.Array:
        """x [..., D] -> code [..., code_dim]."""
        return self.encode_with_preactivation(x)[0]

    def decode_logits(self, code: jax.Array) -> jax.Array:
        """code [..., code_dim] -> output layer before its activation [..., D]."""
        n = len(self.decoder_biases)
        activations = (self.activation,) * (n - 1) + ("linear",)
        return dense_forward(code, self._decoder_kernels(), self.decoder_biases, activations)[0]

    def generate(self, code: jax.Array) -> jax.Array:
        """Reconstruction x_hat [..., D] of a code [..., code_dim]."""
        return get_activation(self.output_activation)(self.decode_logits(code))

    def __call__(self, x: jax.Array) -> Reconstruction:
        code, pre = self.encode_with_preactivation(x)
        logits = self.decode_logits(code)
        return Reconstruction(code=code, code_preactivation=pre, logits=logits,
                              x_hat=get_activation(self.output_activation)(logits))

    def first_layer_kernel(self) -> jax.Array:
        """encoder_kernel_0 [D, w_1]: filter pictures."""
        return self.encoder_kernels[0]

    def dense_shapes(self) -> list[tuple[int, int]]:
        """(fan_in, fan_out) of every matmul of one forward pass (tied layers too)."""
        enc = list(itertools.pairwise(self.widths))
        return enc + [(o, i) for i, o in reversed(enc)]


class DenseEncoder(nn.Module):
    """The lower layers of an autoencoder's encoder as a module of its own:
    x [..., widths[0]] -> [..., widths[-1]], named as the autoencoder names them."""

    widths: Sequence[int]
    activations: Sequence[str]

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel_init, zeros = nn.initializers.lecun_normal(), nn.initializers.zeros_init()
        n = len(self.activations)
        kernels = [self.param(f"encoder_kernel_{i}", kernel_init,
                              (self.widths[i], self.widths[i + 1])) for i in range(n)]
        biases = [self.param(f"encoder_bias_{i}", zeros, (self.widths[i + 1],))
                  for i in range(n)]
        return dense_forward(x, kernels, biases, self.activations)[0]


# ----------------------------------------------------------------------------- classifier

class Classifier(nn.Module):
    """Any encoder module under a softmax head: x [..., D] -> class logits [..., C].

    Parameters: `encoder` (the encoder's own, so a pretrained one drops in whole) and
    `head` (a dense layer).
    """

    encoder: nn.Module
    num_classes: int = 10

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.Dense(self.num_classes, name="head")(self.encoder(x))
