"""Flax (Linen) modules: encoders, decoders, the autoencoder and the variational autoencoder.

Modules return distribution parameters, never losses: the losses live in
`aevb/losses.py` and the objective that ties the two together in `aevb/objectives.py`.
Images enter flattened, as float arrays of shape [..., D] with D = H * W * C.
"""

from __future__ import annotations

import itertools
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
CODE_ACTIVATIONS = ("linear", *ACTIVATIONS)
OUTPUT_ACTIVATIONS = ("sigmoid", "linear")


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


class Autoencoder(nn.Module):
    """A deterministic MLP autoencoder, symmetric around its coding layer.

    Layer widths D -> hidden_sizes... -> code_dim -> reversed(hidden_sizes)... -> D. Every
    layer but the coding and output layers uses `activation`; the coding layer uses
    `code_activation` (sigmoid for a sparse autoencoder, linear for PCA-like codes).

    With `tied_weights` the decoder layer mirroring encoder layer i uses that layer's kernel
    transposed (W' = W^T) and a bias of its own: half the weights of an untied stack.
    Parameters are flat: `encoder_kernel_i`, `encoder_bias_i`, `decoder_bias_i` and, untied,
    `decoder_kernel_i`, with decoder layer i mirroring encoder layer (n - 1 - i).

    `__call__(x)` returns `code` [..., code_dim], `logits` [..., D] (the output layer before
    its activation) and `x_hat` [..., D] (the reconstruction).
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

    def _decoder_kernel(self, j: int) -> jax.Array:
        n = len(self.widths) - 1
        return self.encoder_kernels[n - 1 - j].T if self.tied_weights else self.decoder_kernels[j]

    def encode(self, x: jax.Array) -> jax.Array:
        """x [..., D] -> code [..., code_dim]."""
        act, code_act = get_activation(self.activation), get_activation(self.code_activation)
        n = len(self.encoder_kernels)
        for i, (w, b) in enumerate(zip(self.encoder_kernels, self.encoder_biases)):
            x = x @ w + b
            x = code_act(x) if i == n - 1 else act(x)
        return x

    def decode_logits(self, code: jax.Array) -> jax.Array:
        """code [..., code_dim] -> output layer before its activation [..., D]."""
        act = get_activation(self.activation)
        n = len(self.decoder_biases)
        h = code
        for j in range(n):
            h = h @ self._decoder_kernel(j) + self.decoder_biases[j]
            if j < n - 1:
                h = act(h)
        return h

    def generate(self, code: jax.Array) -> jax.Array:
        """Reconstruction x_hat [..., D] of a code [..., code_dim]."""
        return get_activation(self.output_activation)(self.decode_logits(code))

    def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
        code = self.encode(x)
        logits = self.decode_logits(code)
        return {"code": code, "logits": logits,
                "x_hat": get_activation(self.output_activation)(logits)}


def dense_shapes(model: nn.Module) -> list[tuple[int, int]]:
    """(fan_in, fan_out) of every matmul in one forward pass, encoder first.

    Counted from the layer sizes (a tied decoder layer is a matmul too), for FLOP counts.
    """
    if isinstance(model, Autoencoder):
        widths = model.widths
        enc = list(itertools.pairwise(widths))
        return enc + [(o, i) for i, o in reversed(enc)]
    if isinstance(model, VAE):
        enc_widths = (model.output_dim, *model.hidden_sizes)
        dec_hidden = (tuple(reversed(model.hidden_sizes)) if model.decoder_hidden_sizes is None
                      else tuple(model.decoder_hidden_sizes))
        out = 1 if model.likelihood == "bernoulli" else 2
        dec_widths = (model.latent_dim, *dec_hidden)
        return (list(itertools.pairwise(enc_widths))
                + [(enc_widths[-1], 2 * model.latent_dim)]
                + list(itertools.pairwise(dec_widths))
                + [(dec_widths[-1], out * model.output_dim)])
    raise TypeError(f"no layer shapes for {type(model).__name__}")
