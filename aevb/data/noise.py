"""Input corruptions for denoising autoencoders (Vincent et al. 2008, 2010).

`corrupt(x, kind, key, std, rate)` returns a corrupted copy of a batch x [..., D] with values
in [0, 1]; the loss then compares the reconstruction of the corrupted input with the clean x.
Training draws the corruption with a fresh key every step; evaluation never corrupts,
except to measure how well corrupted test images are restored.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

NOISE_KINDS = ("none", "gaussian", "masking", "dropout", "salt_and_pepper")


def gaussian(x: jax.Array, key: jax.Array, std: float) -> jax.Array:
    """x + std * N(0, 1), elementwise, not clipped (additive isotropic Gaussian noise)."""
    return x + std * jax.random.normal(key, x.shape, x.dtype)


def masking(x: jax.Array, key: jax.Array, rate: float) -> jax.Array:
    """Switches each input unit off (to 0) with probability `rate`, like dropout on the input.

    Unlike dropout the kept units are not rescaled by 1 / (1 - rate): the corrupted image
    stays an image (the masking noise of Vincent et al. 2010).
    """
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x, jnp.zeros_like(x))


def dropout(x: jax.Array, key: jax.Array, rate: float) -> jax.Array:
    """Masking with the kept units scaled by 1 / (1 - rate), as a dropout layer does.

    The corrupted input keeps the clean input's expected value, so the trained model also
    reconstructs clean inputs well (Keras `Dropout` on the inputs, as in Géron's chapter).
    """
    return masking(x, key, rate) / (1.0 - rate)


def salt_and_pepper(x: jax.Array, key: jax.Array, rate: float) -> jax.Array:
    """Sets a fraction `rate` of the units to 0 or 1 (each with probability 1/2)."""
    hit_key, value_key = jax.random.split(key)
    hit = jax.random.bernoulli(hit_key, rate, x.shape)
    salt = jax.random.bernoulli(value_key, 0.5, x.shape).astype(x.dtype)
    return jnp.where(hit, salt, x)


def corrupt(x: jax.Array, kind: str, key: jax.Array, std: float = 0.0,
            rate: float = 0.0) -> jax.Array:
    """Applies the corruption named by `noise.kind` to x [..., D]; `none` returns x."""
    if kind == "none":
        return x
    if kind == "gaussian":
        return gaussian(x, key, std)
    if kind == "masking":
        return masking(x, key, rate)
    if kind == "dropout":
        return dropout(x, key, rate)
    if kind == "salt_and_pepper":
        return salt_and_pepper(x, key, rate)
    raise ValueError(f"noise.kind={kind!r}; allowed: {list(NOISE_KINDS)}")
