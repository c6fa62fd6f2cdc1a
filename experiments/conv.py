"""Geron's convolutional autoencoder on Fashion-MNIST grey levels: 28x28x1 -> 3x3x64 -> back.

The encoder of the chapter: three 3x3 `same` convolutions of 16, 32 and 64 filters, each
followed by 2x2 max-pooling, 28 -> 14 -> 7 -> 3: the code is the last feature map, 3x3x64 =
576 values. The decoder mirrors it with three stride-2 transposed convolutions, 3 -> 7
(padding (2, 2), as Keras' `valid`) -> 14 -> 28, back to one channel through a sigmoid.
As in the project's other autoencoder experiments (`autoencoder_defaults`): ReLU (the book
uses SELU), MSE per pixel, Adam, 20 epochs of batch 32, 5,000 validation images held out.

    python launch.py --config=experiments/conv.py
    python launch.py --config=experiments/conv.py:code30     # a dense 30-unit code
    python launch.py --config=experiments/conv.py --config.noise.kind=masking   # denoising
    python launch.py --config=experiments/conv.py:code30 --config.model.code_activation=sigmoid --config.sparsity.kind=kl

Variants: `code30` (the same conv layers, then a dense 30-unit code, as autoencoder.py and
stacked.py have: a like-for-like comparison with the dense models), `runlocal`.

The layers and the comparison with the dense models: docs/conv.md. Measured: the README's
experiments table (headline) and docs/conv.md.
"""

import ml_collections

from aevb.config import defaults
from experiments.autoencoder import autoencoder_defaults


def conv_layers(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Geron's conv stack: 16, 32, 64 filters of 3x3, `same`, each with 2x2 max-pooling."""
    config.model.architecture = "conv"
    config.model.conv.channels = (16, 32, 64)
    config.model.conv.kernels = (3, 3, 3)
    config.model.conv.strides = (1, 1, 1)
    config.model.conv.pools = (2, 2, 2)
    config.model.conv.paddings = ("same", "same", "same")
    return config


def _code30(config: ml_collections.ConfigDict) -> None:
    config.model.conv.code = "dense"
    config.model.latent_dim = 30


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = conv_layers(autoencoder_defaults(defaults.base_config()))
    config.experiment = "conv"
    config.model.hidden_sizes = ()
    config.model.conv.code = "feature_map"
    config.model.latent_dim = 3 * 3 * 64
    config.model.code_activation = "relu"
    return defaults.apply_variants(config, variant, "experiments/conv.py", {"code30": _code30})
