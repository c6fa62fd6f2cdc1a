"""Flax (Linen) convolutional modules: the layers of `model.architecture='conv'`.

`ConvStack` is the conv layers' geometry (their feature maps' sides, the mirror's paddings,
their FLOPs); `ConvEncoder` and `ConvDecoder` are the two trunks, on which the families put
their heads. What the layers are and why is in `aevb/architectures/conv.py`. Images enter
flattened, [..., D] with D = H * W * C, and are reshaped to [N, H, W, C] inside; the decoder
gives them back flattened.
"""

from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax
import ml_collections
from jax import lax

from aevb import models
from aevb.models import conv_ops

ImageShape = tuple[int, int, int]


@dataclasses.dataclass(frozen=True)
class ConvStack:
    """The conv layers' geometry: per layer channels, kernel, stride, pool and padding."""

    image_shape: ImageShape
    channels: tuple[int, ...]
    kernels: tuple[int, ...]
    strides: tuple[int, ...]
    pools: tuple[int, ...]
    paddings: tuple[str, ...]
    gradients: str = "explicit"         # explicit (`conv_valid`'s) | xla

    @classmethod
    def from_config(cls, mc: ml_collections.ConfigDict, image_shape: ImageShape) -> ConvStack:
        c = mc.conv
        return cls(tuple(image_shape), tuple(c.channels), tuple(c.kernels), tuple(c.strides),
                   tuple(c.pools), tuple(c.paddings), c.gradients)

    @property
    def explicit_gradients(self) -> bool:
        """The written-out gradients of `aevb/models/conv_ops.py` (else XLA's own)."""
        return self.gradients == "explicit"

    def conv_size(self, i: int, n: int) -> int:
        """Side of layer i's convolution output (before pooling) on an input of side n."""
        k, s = self.kernels[i], self.strides[i]
        if self.paddings[i] == "same":
            return -(-n // s)
        return (n - k) // s + 1 if n >= k else 0

    def sides(self) -> list[tuple[int, int]]:
        """(height, width) of the input and after each conv layer (pooled): len + 1 entries."""
        out = [self.image_shape[:2]]
        for i in range(len(self.channels)):
            out.append(tuple(self.conv_size(i, n) // self.pools[i] for n in out[-1]))
        return out

    def map_shape(self) -> tuple[int, int, int]:
        """The last feature map's (height, width, channels)."""
        return (*self.sides()[-1], self.channels[-1])

    def transpose_padding(self, i: int) -> list[tuple[int, int]]:
        """The (low, high) padding per spatial axis of the transposed convolution that
        mirrors layer i: side n -> the side m layer i received, with stride S = stride x
        pool. Its output side is (n - 1) S + low + high - k + 2 (`flax.linen.ConvTranspose`
        with explicit padding), so low + high = m - (n - 1) S + k - 2, split evenly."""
        before, after = self.sides()[i], self.sides()[i + 1]
        k, stride = self.kernels[i], self.strides[i] * self.pools[i]
        pads = []
        for m, n in zip(before, after):
            total = m - (n - 1) * stride + k - 2
            pads.append((total // 2, total - total // 2))
        return pads

    def forward_flops(self) -> tuple[list[float], list[float]]:
        """(encoder, decoder) forward FLOPs of one example per conv layer, 2 per
        multiply-add that meets an input pixel (a tap on padding costs nothing; XLA's
        cost analysis counts the same way). The decoder's list runs from the last feature
        map up."""
        sides, chans = self.sides(), (self.image_shape[2], *self.channels)
        enc, dec = [], []
        for i, k in enumerate(self.kernels):
            pads = [p[0] for p in self.conv_padding(i)]
            taps = [_conv_taps(n, self.conv_size(i, n), k, self.strides[i], lo)
                    for n, lo in zip(sides[i], pads)]
            enc.append(2.0 * math.prod(taps) * chans[i] * chans[i + 1])
            stride = self.strides[i] * self.pools[i]
            taps = [_transpose_taps(n, m, k, stride, lo) for n, m, (lo, _) in
                    zip(sides[i + 1], sides[i], self.transpose_padding(i))]
            dec.append(2.0 * math.prod(taps) * chans[i + 1] * chans[i])
        return enc, dec[::-1]

    def conv_padding(self, i: int) -> list[tuple[int, int]]:
        """Layer i's (low, high) padding per spatial axis (XLA's split for 'same')."""
        if self.paddings[i] == "valid":
            return [(0, 0), (0, 0)]
        k, s = self.kernels[i], self.strides[i]
        return lax.padtype_to_pads(self.sides()[i], (k, k), (s, s), "SAME")


def _conv_taps(n: int, outputs: int, k: int, stride: int, low: int) -> int:
    """(output, tap) pairs of a convolution along one axis that read an input pixel."""
    return sum(0 <= o * stride + t - low < n for o in range(outputs) for t in range(k))


def _transpose_taps(n: int, m: int, k: int, stride: int, low: int) -> int:
    """(input, tap) pairs of a transposed convolution along one axis (n -> m) that write
    an output pixel: output o = low + a S - t."""
    return sum(0 <= low + a * stride - t < m for a in range(n) for t in range(k))


class _ConvLayer(nn.Module):
    """A convolution (`transpose=False`: `conv2d`) or transposed convolution with a bias;
    parameters `kernel` [k, k, C_in, C_out] and `bias` [C_out], as Flax's Conv names them."""

    features: int
    kernel: int
    stride: int
    padding: str | list[tuple[int, int]]
    transpose: bool = False
    kernel_init: str = "lecun_normal"
    explicit_gradients: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        w = self.param("kernel", models.KERNEL_INITS[self.kernel_init],
                       (self.kernel, self.kernel, x.shape[-1], self.features))
        b = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        op = conv_ops.conv_transpose2d if self.transpose else conv_ops.conv2d
        return op(x, w, self.stride, self.padding, self.explicit_gradients) + b


def _flatten_leading(x: jax.Array, inner: tuple[int, ...]) -> tuple[jax.Array, tuple]:
    """x [..., prod(inner)] -> ([N, *inner], the leading shape)."""
    return x.reshape(-1, *inner), x.shape[:-1]


class ConvEncoder(nn.Module):
    """The conv encoder trunk: x [..., D] -> the last layer's output [..., F] (with
    `preactivation`: the pair (output, its pre-activation [..., F])).

    Layers: the conv layers of `stack` (`conv_<i>`), then dense layers of `dense_sizes`
    (`dense_<j>`), each with its entry of `activations`; only the lower `num_layers` of them
    (0: all), which is how pretraining exports the lower layers.
    """

    stack: ConvStack
    dense_sizes: tuple[int, ...] = ()
    activations: tuple[str, ...] = ()
    kernel_init: str = "lecun_normal"
    num_layers: int = 0
    preactivation: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array | tuple[jax.Array, jax.Array]:
        st, init = self.stack, models.KERNEL_INITS[self.kernel_init]
        h, lead = _flatten_leading(x, st.image_shape)
        n_conv = len(st.channels)
        n = self.num_layers or n_conv + len(self.dense_sizes)
        pre = h
        for i in range(min(n, n_conv)):
            k, s, p = st.kernels[i], st.strides[i], st.pools[i]
            pre = _ConvLayer(st.channels[i], k, s, st.paddings[i],
                             kernel_init=self.kernel_init,
                             explicit_gradients=st.explicit_gradients,
                             name=f"conv_{i}")(h)
            if p > 1:
                pre = conv_ops.max_pool(pre, p)
            h = models.get_activation(self.activations[i])(pre)
        h, pre = h.reshape(h.shape[0], -1), pre.reshape(pre.shape[0], -1)
        for j in range(n - n_conv):
            pre = nn.Dense(self.dense_sizes[j], kernel_init=init, name=f"dense_{j}")(h)
            h = models.get_activation(self.activations[n_conv + j])(pre)
        h = h.reshape(*lead, -1)
        return (h, pre.reshape(*lead, -1)) if self.preactivation else h

    def first_layer_kernel(self) -> jax.Array:
        """conv_0's kernel [k, k, C, channels[0]]."""
        return self.variables["params"]["conv_0"]["kernel"]


class ConvDecoder(nn.Module):
    """The conv decoder trunk: code [..., J] -> `channels` outputs per pixel, a tuple of
    `channels` arrays [..., D] (no activation on them).

    Dense layers `dense_<j>` of `dense_sizes`, with `to_map` a dense layer `to_map` to the
    last feature map's size, then the transposed convolutions `deconv_<j>` mirroring the
    encoder's conv layers, the last first; the last one has channels x C output channels,
    output p being channels p C .. (p + 1) C - 1 of each pixel.
    """

    stack: ConvStack
    dense_sizes: tuple[int, ...]
    to_map: bool
    activation: str
    channels: int = 1
    kernel_init: str = "lecun_normal"

    @nn.compact
    def __call__(self, z: jax.Array) -> tuple[jax.Array, ...]:
        st, init = self.stack, models.KERNEL_INITS[self.kernel_init]
        act = models.get_activation(self.activation)
        c = st.image_shape[2]
        h, lead = _flatten_leading(z, z.shape[-1:])
        for j, width in enumerate(self.dense_sizes):
            h = act(nn.Dense(width, kernel_init=init, name=f"dense_{j}")(h))
        map_shape = st.map_shape()
        if self.to_map:
            h = act(nn.Dense(math.prod(map_shape), kernel_init=init, name="to_map")(h))
        h = h.reshape(-1, *map_shape)
        for j, i in enumerate(reversed(range(len(st.channels)))):
            k, stride = st.kernels[i], st.strides[i] * st.pools[i]
            h = _ConvLayer(st.channels[i - 1] if i else self.channels * c, k, stride,
                           st.transpose_padding(i), transpose=True,
                           kernel_init=self.kernel_init,
                           explicit_gradients=st.explicit_gradients,
                           name=f"deconv_{j}")(h)
            if i:
                h = act(h)
        y = h.reshape(*lead, *h.shape[1:])                                 # [..., H, W, pC]
        return tuple(y[..., p * c:(p + 1) * c].reshape(*lead, -1)
                     for p in range(self.channels))
