"""Deterministic autoencoders: the stacked dense autoencoder (symmetric around the code, tied
weights W' = W^T as an option, flat parameters that layer-wise training splits into layers),
its encoder half as a feature extractor, and an autoencoder on any architecture's two
trunks (`TrunkAutoencoder`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import flax.linen as nn
import flax.struct
import jax

from aevb.models.layers import get_activation


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


class Reconstructs(nn.Module):
    """What every autoencoder derives from its `encode_with_preactivation` and
    `decode_logits` (and its field `output_activation`): `generate` and the forward pass."""

    def generate(self, code: jax.Array) -> jax.Array:
        """Reconstruction x_hat [..., D] of a code [..., code_dim]."""
        return get_activation(self.output_activation)(self.decode_logits(code))

    def __call__(self, x: jax.Array) -> Reconstruction:
        code, pre = self.encode_with_preactivation(x)
        logits = self.decode_logits(code)
        return Reconstruction(code=code, code_preactivation=pre, logits=logits,
                              x_hat=get_activation(self.output_activation)(logits))


class Autoencoder(Reconstructs):
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

    def first_layer_kernel(self) -> jax.Array:
        """encoder_kernel_0 [D, w_1]: filter pictures."""
        return self.encoder_kernels[0]

    def dense_shapes(self) -> list[tuple[int, int]]:
        """(fan_in, fan_out) of every matmul of one forward pass (tied layers too)."""
        enc = list(itertools.pairwise(self.widths))
        return enc + [(o, i) for i, o in reversed(enc)]


class TrunkAutoencoder(Reconstructs):
    """An autoencoder on an architecture's trunks, with the interface of `Autoencoder`.

    `encoder`: x [..., D] -> (code, its pre-activation) [..., J] (an encoder trunk whose top
    layer is the code layer, built with `preactivation`); `decoder`: code [..., J] -> (the
    output layer before its activation [..., D],) (a decoder trunk of one channel). Their
    parameters sit under `encoder` and `decoder`.
    """

    encoder: nn.Module
    decoder: nn.Module
    output_activation: str = "sigmoid"

    def encode_with_preactivation(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """x [..., D] -> (code, its pre-activation) [..., J]."""
        return self.encoder(x)

    def encode(self, x: jax.Array) -> jax.Array:
        """x [..., D] -> code [..., J]."""
        return self.encoder(x)[0]

    def decode_logits(self, code: jax.Array) -> jax.Array:
        """code [..., J] -> output layer before its activation [..., D]."""
        return self.decoder(code)[0]

    def first_layer_kernel(self) -> jax.Array:
        """The encoder trunk's first kernel: filter pictures."""
        return self.encoder.first_layer_kernel()


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
