"""Convolutional encoders and decoders: `model.architecture='conv'`, fields `model.conv.*`.

Encoder: the image x [..., D] as [N, H, W, C]; per conv layer i, `model.conv.channels[i]`
filters of `kernels[i]` x `kernels[i]` with stride `strides[i]` and padding `paddings[i]`
('same' or 'valid'), then max-pooling over `pools[i]` x `pools[i]` windows (1: none), then
the activation (pooling first gives the same values for a monotone activation, computed on
fewer of them). Then the feature map flattened, `model.hidden_sizes` dense layers and the
code: a dense layer (`model.conv.code='dense'`; the VAE's mean and log-variance) or the
last feature map itself (`'feature_map'`, Geron's convolutional autoencoder: the last conv
layer uses `model.code_activation`, and `model.latent_dim` is the map's size).

Decoder: the mirror image. Dense layers back up (the reversed hidden sizes, then one to the
last feature map's size), then per conv layer, the last first, a transposed convolution
with that layer's kernel and stride x pool as its stride, to the channels and the exact
height and width the layer received: 3 -> 7 -> 14 -> 28 after 28 -> 14 -> 7 -> 3. Its
padding is computed, not configured: the (low, high) pair that gives the size back. The
last one has C channels (2C: a Gaussian decoder's mean and log-variance) and no activation.

The families' heads go on these trunks (`aevb/architectures/base.py`); M2 with
`m2.architecture='conv'` takes its conv layers from `model.conv` too.

Not supported, and refused by validation: tied weights (a decoder layer here undoes its
encoder layer's pooling and stride as well as its convolution, so the encoder's kernel is
not its transpose), and greedy layer-wise training (it trains dense layers one at a time).
"""


from __future__ import annotations

import itertools
import math

import ml_collections
import numpy as np

from aevb.architectures.base import Architecture, ImageShape
from aevb.config import checks
from aevb.models.conv import ConvDecoder, ConvEncoder, ConvStack

PADDINGS = ("same", "valid")
CODES = ("dense", "feature_map")
GRADIENTS = ("explicit", "xla")


class ConvArchitecture(Architecture):
    name = "conv"

    def check_fields(self, config: ml_collections.ConfigDict) -> None:
        """Every `model.conv` field: choices, and one tuple entry per conv layer."""
        mc = config.model
        checks.check_choice(config, "model.conv.code", CODES)
        checks.check_choice(config, "model.conv.gradients", GRADIENTS)
        checks.check_int_tuple(config, "model.conv.channels")
        num = len(mc.conv.channels)
        if not num:
            checks.fail("model.conv.channels", mc.conv.channels,
                        "must name at least one conv layer, e.g. '(16, 32, 64)'")
        for field in ("kernels", "strides", "pools", "paddings"):
            value = checks.get(config, f"model.conv.{field}")
            if field != "paddings":
                checks.check_int_tuple(config, f"model.conv.{field}")
            elif not isinstance(value, (tuple, list)) or any(p not in PADDINGS for p in value):
                checks.fail("model.conv.paddings", value,
                            f"must be a tuple of {list(PADDINGS)}, one per conv layer")
            if len(value) != num:
                checks.fail(f"model.conv.{field}", value,
                            f"must have one entry per conv layer of model.conv.channels "
                            f"({num})")

    def validate(self, config: ml_collections.ConfigDict, image_shape: ImageShape) -> None:
        """The feature maps' sides on (H, W, C), and the code's size."""
        stack = ConvStack.from_config(config.model, image_shape)
        _check_sides(stack)
        if config.model.conv.code == "feature_map":
            _check_feature_map_code(config, stack)

    def has_dense_code(self, mc):
        return mc.conv.code == "dense"

    def encoder_trunk(self, mc, image_shape, widths, activation, *, top_activation=None,
                      kernel_init="lecun_normal", num_layers=0, preactivation=False):
        """`ConvEncoder` (parameters under `body`: `conv_<i>`, `dense_<j>`)."""
        depth = self.trunk_depth(mc, widths)
        activations = (activation,) * (depth - 1) + (top_activation or activation,)
        return ConvEncoder(ConvStack.from_config(mc, image_shape), tuple(widths), activations,
                           kernel_init, num_layers, preactivation, name="body")

    def decoder_trunk(self, mc, image_shape, widths, activation, channels=1, *,
                      kernel_init="lecun_normal", output_name="output", dense_input=True):
        """`ConvDecoder` (parameters under `body`: `dense_<j>`, `to_map`, `deconv_<j>`)."""
        return ConvDecoder(ConvStack.from_config(mc, image_shape), tuple(widths), dense_input,
                           activation, channels, kernel_init, name="body")

    def trunk_depth(self, mc, widths):
        return len(mc.conv.channels) + len(widths)

    def encoder_flops(self, mc, image_shape, widths):
        stack = ConvStack.from_config(mc, image_shape)
        enc, _ = stack.forward_flops()
        dims = (math.prod(stack.map_shape()), *widths)
        return enc + [2.0 * a * b for a, b in itertools.pairwise(dims)], dims[-1]

    def decoder_flops(self, mc, image_shape, input_width, widths, channels=1,
                      dense_input=True):
        stack = ConvStack.from_config(mc, image_shape)
        _, dec = stack.forward_flops()
        back = (input_width, *widths) + ((math.prod(stack.map_shape()),) if dense_input else ())
        dec[-1] *= channels       # the last transposed convolution has channels x C outputs
        return [2.0 * a * b for a, b in itertools.pairwise(back)] + dec

    def filter_tiles(self, kernel, image_shape):
        """[k, k, C, F] -> [F, k, k, C], each filter rescaled to [0, 1] on its own."""
        w = np.moveaxis(np.asarray(kernel), -1, 0)
        lo = w.min(axis=(1, 2, 3), keepdims=True)
        hi = w.max(axis=(1, 2, 3), keepdims=True)
        return (w - lo) / np.maximum(hi - lo, 1e-12)


def _check_sides(stack: ConvStack) -> None:
    """Every feature map keeps at least one pixel, and every transposed convolution's
    kernel covers its stride (else some output pixels would be the bias alone)."""
    sides = stack.sides()
    trail = " -> ".join(f"{h}x{w}" for h, w in sides)
    for i, (h, w) in enumerate(sides[1:]):
        if min(h, w) < 1:
            field = ("kernels" if stack.paddings[i] == "valid"
                     and min(sides[i]) < stack.kernels[i] else "pools")
            checks.fail(f"model.conv.{field}", getattr(stack, field),
                        f"the feature maps would be {trail}: conv layer {i + 1} leaves "
                        "nothing; use fewer layers, or smaller strides, pools or kernels")
    for i, k in enumerate(stack.kernels):
        if k < stack.strides[i] * stack.pools[i]:
            checks.fail("model.conv.kernels", stack.kernels,
                        f"layer {i + 1}'s kernel ({k}) is smaller than its stride x pool "
                        f"({stack.strides[i] * stack.pools[i]}): the transposed convolution "
                        "mirroring it would leave pixels that no kernel tap reaches")


def _check_feature_map_code(config: ml_collections.ConfigDict, stack: ConvStack) -> None:
    mc = config.model
    h, w, c = stack.map_shape()
    if mc.latent_dim != h * w * c:
        checks.fail("model.latent_dim", mc.latent_dim,
                    f"with model.conv.code='feature_map' the code is the last feature map, "
                    f"{h}x{w}x{c} = {h * w * c} values: set model.latent_dim={h * w * c}")
    if tuple(mc.hidden_sizes):
        checks.fail("model.hidden_sizes", mc.hidden_sizes,
                    "must be () with model.conv.code='feature_map' (the code is the last "
                    "feature map, with no dense layers after it)")
