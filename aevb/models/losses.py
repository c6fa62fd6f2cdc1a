"""Loss terms for autoencoders and the VAE (Kingma & Welling, 2014).

Conventions shared by every function here:

* Pure ``jax.numpy`` functions: no state, no randomness, safe under ``jit``/``vmap``/``grad``.
* Inputs have shape ``[..., D]``. The LAST axis is the event axis (pixels, latent
  dimensions) and is summed over; every leading axis is a batch axis and is kept. So a
  batch ``[B, D]`` gives ``[B]``, samples ``[K, B, D]`` give ``[K, B]`` and a single example
  ``[D]`` gives a scalar.
* Values are PER EXAMPLE and unreduced: the caller decides whether to take a mean or a sum
  over the batch. (The exception is ``kl_sparsity_penalty``, a batch statistic by nature;
  see its docstring.)
* Log-likelihoods are positive-is-better log densities; losses (cross-entropy, squared
  errors, penalties) are positive-is-worse.
* Numerically stable forms throughout (``log_sigmoid``, ``logsumexp``); logits of
  magnitude 1e4 give finite values and finite gradients.
* Arrays that must have the same shape are checked statically and a mismatch raises
  ``ValueError`` naming both shapes, instead of broadcasting silently.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

_LOG_2PI = math.log(2.0 * math.pi)


def _check_same_shape(a: jax.Array, b: jax.Array, names: tuple[str, str]) -> None:
    """Raise ``ValueError`` naming both shapes unless ``a.shape == b.shape`` (static shapes).

    Broadcasting is refused on purpose: e.g. logits ``[B, D]`` against targets ``[B, 1]``
    would broadcast without complaint and silently give a wrong per-example sum.
    """
    if a.shape != b.shape:
        raise ValueError(
            f"shape mismatch: {names[0]} has shape {a.shape} but {names[1]} has shape {b.shape}"
        )


def _check_event_axis(a: jax.Array, name: str) -> None:
    """Raise ``ValueError`` unless ``a`` has at least one axis (the event axis ``D``)."""
    if a.ndim < 1:
        raise ValueError(f"{name} must have shape [..., D] (at least 1 axis), got shape {a.shape}")


@jax.custom_jvp
def softplus(x: jax.Array) -> jax.Array:
    """log(1 + e^x) elementwise, as ``max(x, 0) + log1p(e^-|x|)`` (finite for any x).

    The value of ``jax.nn.softplus``; the derivative, sigmoid(x), is formed from the same
    ``e^-|x|`` (one exp, one log1p, one division), where ``jax.nn.softplus``'s
    (``logaddexp``'s) rule takes another exp and NaN guards: a fused softplus and its
    gradient cost about a third as much on a CPU (M2's step has ~2 M of them).
    """
    return jnp.maximum(x, 0) + jnp.log1p(jnp.exp(-jnp.abs(x)))


@softplus.defjvp
def _softplus_jvp(primals: tuple[jax.Array], tangents: tuple[jax.Array]
                  ) -> tuple[jax.Array, jax.Array]:
    (x,), (dx,) = primals, tangents
    e = jnp.exp(-jnp.abs(x))
    inverse = 1 / (1 + e)
    sigmoid = jnp.where(x >= 0, inverse, e * inverse)   # 1/(1+e^-x), e^x/(1+e^x)
    return jnp.maximum(x, 0) + jnp.log1p(e), sigmoid * dx


def bernoulli_log_likelihood(logits: jax.Array, x: jax.Array) -> jax.Array:
    """Log-likelihood of ``x`` under independent Bernoullis with the given logits.

    ``sum_d x_d * log sigmoid(l_d) + (1 - x_d) * log sigmoid(-l_d)``, the decoder term
    ``log p(x|z)`` for binarised (or, as a common relaxation, grey-level) images.

    Args:
      logits: ``[..., D]`` decoder logits (pre-sigmoid), any real value.
      x: ``[..., D]`` targets in ``[0, 1]``; not required to be binary.

    Returns:
      ``[...]`` log-likelihood per example (``<= 0`` for binary ``x``).

    Written with ``softplus`` rather than ``log(sigmoid(.))`` so that saturated logits
    (``|l| ~ 1e4``) give a finite value and a finite gradient instead of ``log(0) = -inf``.
    """
    logits = jnp.asarray(logits)
    x = jnp.asarray(x)
    _check_same_shape(logits, x, ("logits", "x"))
    _check_event_axis(logits, "logits")
    # x log s(l) + (1 - x) log s(-l) = x l - softplus(l): one softplus instead of two
    # log-sigmoids, the same value, and finite for any logit.
    per_pixel = x * logits - softplus(logits)
    return jnp.sum(per_pixel, axis=-1)


def bernoulli_cross_entropy(logits: jax.Array, x: jax.Array) -> jax.Array:
    """Binary cross-entropy summed over pixels: ``-bernoulli_log_likelihood(logits, x)``.

    The usual autoencoder reconstruction loss for images in ``[0, 1]``. Summed (not averaged)
    over the ``D`` pixels so that it is the negative log-likelihood in nats per example.

    Args:
      logits: ``[..., D]`` decoder logits.
      x: ``[..., D]`` targets in ``[0, 1]``.

    Returns:
      ``[...]`` cross-entropy per example (``>= 0`` for binary ``x``).
    """
    return -bernoulli_log_likelihood(logits, x)


def gaussian_log_likelihood(x: jax.Array, mean: jax.Array, log_var: jax.Array) -> jax.Array:
    """Log density of ``x`` under a diagonal Gaussian ``N(mean, diag(exp(log_var)))``.

    ``sum_d -0.5 * (log(2 pi) + log_var_d + (x_d - mean_d)^2 / exp(log_var_d))``. Serves both
    as a Gaussian decoder ``log p(x|z)`` and as the encoder density ``log q(z|x)``.
    Parameterising by the log-variance keeps the variance positive without a constraint.

    Args:
      x: ``[..., D]`` points at which to evaluate the density.
      mean: ``[..., D]`` means; must have exactly the shape of ``x``.
      log_var: log-variances broadcastable to ``mean``'s shape, e.g. ``[..., D]``, ``[D]``
        (one variance per dimension shared across the batch) or a scalar (isotropic).

    Returns:
      ``[...]`` log density per example.
    """
    x = jnp.asarray(x)
    mean = jnp.asarray(mean)
    log_var = jnp.asarray(log_var)
    _check_same_shape(x, mean, ("x", "mean"))
    _check_event_axis(x, "x")
    try:
        broadcast = np.broadcast_shapes(log_var.shape, mean.shape)
    except ValueError:
        broadcast = None
    if broadcast != mean.shape:
        raise ValueError(
            f"log_var with shape {log_var.shape} does not broadcast to mean's shape {mean.shape}"
        )
    # Broadcast before summing so a scalar/[D] log_var is counted once per dimension.
    log_var = jnp.broadcast_to(log_var, mean.shape)
    per_dim = -0.5 * (_LOG_2PI + log_var + jnp.square(x - mean) * jnp.exp(-log_var))
    return jnp.sum(per_dim, axis=-1)


def standard_normal_log_density(z: jax.Array) -> jax.Array:
    """Log density of ``z`` under the standard normal prior ``N(0, I)``.

    ``sum_d -0.5 * (log(2 pi) + z_d^2)``, the prior term ``log p(z)`` of the VAE.

    Args:
      z: ``[..., D]`` latent points.

    Returns:
      ``[...]`` log density per example.
    """
    z = jnp.asarray(z)
    _check_event_axis(z, "z")
    return jnp.sum(-0.5 * (_LOG_2PI + jnp.square(z)), axis=-1)


def gaussian_mixture_log_density(z: jax.Array, loc: jax.Array, log_var: jax.Array
                                 ) -> jax.Array:
    """Log density of ``z`` under the equally weighted mixture of K diagonal Gaussians
    ``(1/K) sum_k N(loc_k, diag(exp(log_var_k)))``: the VampPrior's ``log p(z)`` (Tomczak &
    Welling 2018), whose components are the encoder's posteriors at K pseudo-inputs.

    ``logsumexp_k log N(z | loc_k, var_k) - log K``. The squared distances come from three
    matmuls (``z^2 . 1/var - 2 z . loc/var + loc^2 . 1/var``) rather than a broadcast
    ``[..., K, L]`` difference, so L_5000's chunks of 20,000 codes against 500 components
    need ``[20000, 500]`` values, not ``[20000, 500, L]``.

    Args:
      z: ``[..., L]`` latent points.
      loc: ``[K, L]`` component means.
      log_var: ``[K, L]`` component log-variances.

    Returns:
      ``[...]`` log density per point.
    """
    z, loc, log_var = jnp.asarray(z), jnp.asarray(loc), jnp.asarray(log_var)
    _check_event_axis(z, "z")
    _check_same_shape(loc, log_var, ("loc", "log_var"))
    if loc.ndim != 2 or loc.shape[-1] != z.shape[-1]:
        raise ValueError(f"loc must have shape [K, {z.shape[-1]}] (K components of z's "
                         f"dimension), got {loc.shape}")
    precision = jnp.exp(-log_var)                                         # [K, L]
    # Full float32 matmuls: the terms cancel where z is near a component of small variance,
    # so TF32 (GPUs) or bfloat16 passes (TPUs), the default precision there, would not do.
    dot = functools.partial(jnp.matmul, precision=jax.lax.Precision.HIGHEST)
    squared = (dot(jnp.square(z), precision.T) - 2.0 * dot(z, (loc * precision).T)
               + jnp.sum(jnp.square(loc) * precision, axis=-1))           # [..., K]
    log_components = -0.5 * (z.shape[-1] * _LOG_2PI + jnp.sum(log_var, axis=-1) + squared)
    return jax.nn.logsumexp(log_components, axis=-1) - math.log(loc.shape[0])


def kl_standard_normal(mean: jax.Array, log_var: jax.Array) -> jax.Array:
    """Analytic ``KL(N(mean, diag(exp(log_var))) || N(0, I))``, summed over dimensions.

    ``0.5 * sum_d (exp(log_var_d) + mean_d^2 - 1 - log_var_d)``: the closed-form KL term of
    the VAE objective (Kingma & Welling 2014, appendix B), which has lower variance than a
    Monte Carlo estimate. Non-negative, and zero iff ``mean = 0`` and ``log_var = 0``.

    Args:
      mean: ``[..., D]`` encoder means.
      log_var: ``[..., D]`` encoder log-variances; must have exactly the shape of ``mean``.

    Returns:
      ``[...]`` KL divergence per example, in nats.
    """
    return 0.5 * jnp.sum(_twice_kl_per_dim(mean, log_var), axis=-1)


def kl_standard_normal_per_dim(mean: jax.Array, log_var: jax.Array) -> jax.Array:
    """The terms of ``kl_standard_normal`` before the sum: ``[..., D]``, one per latent
    dimension (a dimension whose KL is ~0 for every input has collapsed to the prior).

    ``0.5 * (exp(log_var) + mean^2 - 1 - log_var)``, each non-negative.
    """
    return 0.5 * _twice_kl_per_dim(mean, log_var)


def _twice_kl_per_dim(mean: jax.Array, log_var: jax.Array) -> jax.Array:
    """``exp(log_var) + mean^2 - 1 - log_var`` ``[..., D]``, shapes checked."""
    mean = jnp.asarray(mean)
    log_var = jnp.asarray(log_var)
    _check_same_shape(mean, log_var, ("mean", "log_var"))
    _check_event_axis(mean, "mean")
    return jnp.exp(log_var) + jnp.square(mean) - 1.0 - log_var


def mean_squared_error(x_hat: jax.Array, x: jax.Array) -> jax.Array:
    """Per-example MEAN over the last axis of ``(x_hat - x)^2`` (per-pixel MSE).

    Matches what Keras reports as ``mse``; divide-by-``D`` makes it comparable across image
    sizes.

    Args:
      x_hat: ``[..., D]`` reconstructions.
      x: ``[..., D]`` targets; same shape.

    Returns:
      ``[...]`` mean squared error per example.
    """
    x_hat = jnp.asarray(x_hat)
    x = jnp.asarray(x)
    _check_same_shape(x_hat, x, ("x_hat", "x"))
    _check_event_axis(x, "x")
    return jnp.mean(jnp.square(x_hat - x), axis=-1)
