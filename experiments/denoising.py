"""Denoising stacked autoencoder: 784-100-30 trained to restore corrupted Fashion-MNIST.

Half of the input pixels are switched off, the others scaled by 2 (dropout on the inputs, as
in Géron's chapter; a fresh mask every step, never at evaluation), and the loss compares the
reconstruction with the clean image. The
summary adds `test_denoising_mse` (corrupted test images restored) next to
`test_corrupted_mse` (the corrupted images themselves); `denoising.png` shows rows of
corrupted / reconstructed / clean images.

    python launch.py --config=experiments/denoising.py
    python launch.py --config=experiments/denoising.py:gaussian   # N(0, 0.2^2) added
    python launch.py --config=experiments/denoising.py:salt_and_pepper

Variants: `masking` (rate 0.3, kept pixels not rescaled: Vincent et al. 2010), `gaussian`,
`salt_and_pepper` (20% of pixels set to 0 or 1), `runlocal`.

The model: docs/autoencoders.md. Measured: the README's experiments table (headline) and
docs/results.md.
"""

import ml_collections

from aevb.config import defaults
from experiments import stacked


def _masking(config: ml_collections.ConfigDict) -> None:
    config.noise.kind = "masking"
    config.noise.rate = 0.3


def _gaussian(config: ml_collections.ConfigDict) -> None:
    config.noise.kind = "gaussian"
    config.noise.std = 0.2


def _salt_and_pepper(config: ml_collections.ConfigDict) -> None:
    config.noise.kind = "salt_and_pepper"
    config.noise.rate = 0.2


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = stacked.get_config()
    config.experiment = "denoising"
    config.noise.kind = "dropout"
    config.noise.rate = 0.5
    return defaults.apply_variants(config, variant, "experiments/denoising.py",
                                  {"masking": _masking, "gaussian": _gaussian,
                                   "salt_and_pepper": _salt_and_pepper})
