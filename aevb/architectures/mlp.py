"""Dense (multilayer perceptron) encoders and decoders: `model.architecture='mlp'`.

Encoder: `model.hidden_sizes` dense layers, then the code (or the VAE's mean and
log-variance); the decoder mirrors the widths. The modules live in `aevb/models.py`; this
file builds them from the config. The only architecture with tied weights (`models.
Autoencoder`) and greedy layer-wise training (`aevb/layerwise.py`).
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from aevb import models
from aevb.architectures.base import Architecture


def _pixels(image_shape) -> int:
    return math.prod(image_shape)


def vae_dense_shapes(mc, image_shape) -> list[tuple[int, int]]:
    """(fan_in, fan_out) of every matmul of the dense VAE's forward pass, encoder first."""
    d = _pixels(image_shape)
    enc = (d, *mc.hidden_sizes)
    dec = (mc.latent_dim, *reversed(mc.hidden_sizes))
    out = 1 if mc.decoder == "bernoulli" else 2
    return (list(itertools.pairwise(enc)) + [(enc[-1], 2 * mc.latent_dim)]
            + list(itertools.pairwise(dec)) + [(dec[-1], out * d)])


class MLPArchitecture(Architecture):
    name = "mlp"
    supports_tied_weights = True
    supports_layerwise = True

    def gaussian_encoder(self, mc, image_shape):
        return models.GaussianEncoder(tuple(mc.hidden_sizes), mc.latent_dim, mc.activation,
                                      mc.kernel_init)

    def posterior_mean(self, mc, image_shape):
        return models.PosteriorMean(tuple(mc.hidden_sizes), mc.latent_dim, mc.activation,
                                    mc.kernel_init)

    def decoder(self, mc, image_shape):
        return models.Decoder(tuple(reversed(mc.hidden_sizes)), _pixels(image_shape),
                              mc.decoder, mc.activation, mc.kernel_init,
                              mc.decoder_min_log_var)

    def vae_features(self, mc, image_shape, encoder_params, num_layers):
        module = models.MLP(tuple(mc.hidden_sizes)[:num_layers], mc.activation, mc.kernel_init)
        if encoder_params is None:
            return module, None
        mlp = encoder_params["mlp"]
        return module, {"params": {f"hidden_{i}": mlp[f"hidden_{i}"] for i in range(num_layers)}}

    def autoencoder(self, mc, image_shape):
        return models.Autoencoder(hidden_sizes=tuple(mc.hidden_sizes), code_dim=mc.latent_dim,
                                  output_dim=_pixels(image_shape), activation=mc.activation,
                                  code_activation=mc.code_activation,
                                  output_activation=mc.output_activation,
                                  tied_weights=mc.tied_weights)

    def autoencoder_features(self, mc, image_shape, params, num_layers):
        """A `DenseEncoder` with the stack's own arrays, under the same names."""
        widths = (_pixels(image_shape), *mc.hidden_sizes, mc.latent_dim)[:num_layers + 1]
        activations = ((mc.activation,) * len(mc.hidden_sizes)
                       + (mc.code_activation,))[:num_layers]
        module = models.DenseEncoder(widths, activations)
        if params is None:
            return module, None
        names = [f"encoder_{part}_{i}" for i in range(num_layers) for part in ("kernel", "bias")]
        return module, {"params": {name: params["params"][name] for name in names}}

    def encoder_depth(self, mc):
        return len(mc.hidden_sizes) + 1

    def vae_forward_flops(self, mc, image_shape):
        flops = [2.0 * i * o for i, o in vae_dense_shapes(mc, image_shape)]
        return flops[:len(mc.hidden_sizes) + 1], flops[len(mc.hidden_sizes) + 1:]

    def filter_tiles(self, kernel, image_shape, max_filters: int = 100):
        """[D, H] -> [min(H, max_filters), *image_shape]: each unit's incoming weights as a
        picture, rescaled to [0, 1] on its own (min to max), so the shape of what the unit
        responds to shows whatever its scale."""
        w = np.asarray(kernel)[:, :max_filters].T
        lo, hi = w.min(axis=1, keepdims=True), w.max(axis=1, keepdims=True)
        w = (w - lo) / np.maximum(hi - lo, 1e-12)
        return w.reshape(-1, *image_shape)
