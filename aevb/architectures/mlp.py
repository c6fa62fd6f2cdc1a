"""Dense (multilayer perceptron) trunks: `model.architecture='mlp'`.

Encoder trunk: dense layers of the caller's widths (`models.MLP`, parameters under `mlp`);
decoder trunk: dense layers, then one dense output layer of channels x D (`models.
MLPDecoder`). The only architecture whose layers are a plain dense stack (`dense_stack`):
the stacked autoencoder with tied weights (`models.Autoencoder`) and greedy layer-wise
training (`aevb/regimes/layerwise.py`) are built on it.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from aevb import models
from aevb.architectures.base import Architecture


def _pixels(image_shape) -> int:
    return math.prod(image_shape)


def _gates(mc) -> int:
    """A hidden layer's matmul widths over its units: 2 when gated (value and gate)."""
    return 2 if getattr(mc, "activation", "") == models.GATED else 1


def dense_shapes(widths) -> list[tuple[int, int]]:
    """(fan_in, fan_out) of each matmul of dense layers of `widths` (input first)."""
    return list(itertools.pairwise(widths))


class MLPArchitecture(Architecture):
    name = "mlp"
    dense_stack = True
    supports_tied_weights = True
    supports_layerwise = True

    def encoder_trunk(self, mc, image_shape, widths, activation, *, top_activation=None,
                      kernel_init="lecun_normal", num_layers=0, preactivation=False):
        kept = tuple(widths)[:num_layers or None]
        top = top_activation if len(kept) == len(widths) else None
        return models.MLP(kept, activation, kernel_init, top, preactivation, name="mlp")

    def decoder_trunk(self, mc, image_shape, widths, activation, channels=1, *,
                      kernel_init="lecun_normal", output_name="output", dense_input=True):
        return models.MLPDecoder(tuple(widths), _pixels(image_shape), channels, activation,
                                 kernel_init, output_name)

    def trunk_depth(self, mc, widths):
        return len(widths)

    def encoder_flops(self, mc, image_shape, widths):
        dims = (_pixels(image_shape), *widths)
        return [2.0 * i * o * _gates(mc) for i, o in dense_shapes(dims)], dims[-1]

    def decoder_flops(self, mc, image_shape, input_width, widths, channels=1,
                      dense_input=True):
        dims = (input_width, *widths, channels * _pixels(image_shape))
        shapes = dense_shapes(dims)
        return [2.0 * i * o * (_gates(mc) if k < len(shapes) - 1 else 1)
                for k, (i, o) in enumerate(shapes)]

    def filter_tiles(self, kernel, image_shape, max_filters: int = 100):
        """[D, H] -> [min(H, max_filters), *image_shape]: each unit's incoming weights as a
        picture, rescaled to [0, 1] on its own (min to max), so the shape of what the unit
        responds to shows whatever its scale."""
        w = np.asarray(kernel)[:, :max_filters].T
        lo, hi = w.min(axis=1, keepdims=True), w.max(axis=1, keepdims=True)
        w = (w - lo) / np.maximum(hi - lo, 1e-12)
        return w.reshape(-1, *image_shape)
