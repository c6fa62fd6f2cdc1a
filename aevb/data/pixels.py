"""Pixels as model inputs: grey levels in [0, 1], binarized or dequantized (`data.binarize`).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

BINARIZATIONS = ("dynamic", "static", "none", "dequantize")


# --- On-device preprocessing -----------------------------------------------
def to_unit_interval(images_u8: jax.Array) -> jax.Array:
    """uint8 pixels 0..255 (any shape) as float32 in [0, 1], same shape."""
    images_u8 = jnp.asarray(images_u8)
    if images_u8.dtype != jnp.uint8:
        raise TypeError(f"to_unit_interval expects uint8 pixels, got {images_u8.dtype}")
    return images_u8.astype(jnp.float32) / 255.0


def binarize(x: jax.Array, mode: str, key: jax.Array | None) -> jax.Array:
    """Turns grey levels x in [0, 1] (any shape) into Bernoulli-decoder targets.

    Modes:
      'dynamic': a fresh Bernoulli(x) sample per call, as float32 0/1; `key` is
        required. Resampling every step (Salakhutdinov & Murray 2008) acts as a
        regulariser and is the usual VAE setup on grey-level MNIST-like data.
      'static': the fixed threshold x > 0.5, as float32 0/1.
      'none': x unchanged (continuous targets).
      'dequantize': not binarized but dequantized: the grey level g = 255 x becomes
        (g + u) / 256 with a fresh u ~ U[0, 1) per pixel and call (`key` required), so the
        data have a density on [0, 1)^D and a continuous model's nats are a bound on the
        discrete data's (Theis et al. 2016); bits per dimension follow from them
        (`bits_per_dim`).

    Pure jax.numpy, so it works inside `jit` and `lax.scan` (mode is static).

    Raises:
      ValueError: `mode` is not one of BINARIZATIONS, or 'dynamic' without a key.
    """
    if mode not in BINARIZATIONS:
        raise ValueError(
            f"binarization mode {mode!r} is not one of {', '.join(map(repr, BINARIZATIONS))}"
        )
    if mode == "none":
        return x
    if mode == "static":
        return (x > 0.5).astype(jnp.float32)
    if key is None:
        raise ValueError(f"binarization mode {mode!r} needs a PRNG key, got key=None")
    if mode == "dequantize":
        grey = jnp.round(x * 255.0)
        return (grey + jax.random.uniform(key, x.shape, jnp.float32)) / 256.0
    return jax.random.bernoulli(key, x).astype(jnp.float32)


def bits_per_dim(log_likelihood: float, num_dims: int) -> float:
    """Bits per dimension of the 8-bit data from a log-likelihood (nats) of dequantized
    inputs in [0, 1)^D: -(log p - D log 256) / (D log 2). The density of (g + u) / 256 is
    256^D times the density of g + u, whose integral over each unit cube bounds the
    probability of the grey levels g."""
    return -(log_likelihood - num_dims * math.log(256.0)) / (num_dims * math.log(2.0))


def preprocess(images: jax.Array, mode: str, key: jax.Array | None) -> jax.Array:
    """uint8 pixels [B, D] -> float32 model input [B, D] under `data.binarize` = mode."""
    return binarize(to_unit_interval(images), mode, key)
