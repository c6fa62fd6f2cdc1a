"""The importance-weighted bound L_k of Burda, Grosse & Salakhutdinov (2015) and the log
weights it averages.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from aevb.models.losses import _check_same_shape


def importance_weighted_bound(
    log_p_x_given_z: jax.Array, log_p_z: jax.Array, log_q_z: jax.Array
) -> jax.Array:
    """Importance-weighted bound ``L_K`` on ``log p(x)`` (Burda, Grosse & Salakhutdinov 2015).

    With ``K`` samples ``z_k ~ q(z|x)`` and log weights
    ``log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x)``,
    ``L_K = logsumexp_k(log w_k) - log K``, i.e. the log of the average importance weight.
    In expectation ``L_1`` is the ELBO, ``L_K`` increases with ``K``, and ``L_K -> log p(x)``
    as ``K -> inf``; it is ``log p(x)`` exactly for every ``K`` when ``q`` is the true posterior.
    ``logsumexp`` keeps this finite although individual weights ``w_k`` under/overflow.

    Args:
      log_p_x_given_z: ``[K, ...]`` decoder log-likelihoods, samples on axis 0.
      log_p_z: ``[K, ...]`` prior log densities of the same samples.
      log_q_z: ``[K, ...]`` encoder log densities of the same samples.

    Returns:
      ``[...]`` bound per example (the Monte Carlo estimate from these ``K`` samples).
    """
    log_p_x_given_z = jnp.asarray(log_p_x_given_z)
    log_p_z = jnp.asarray(log_p_z)
    log_q_z = jnp.asarray(log_q_z)
    _check_same_shape(log_p_x_given_z, log_p_z, ("log_p_x_given_z", "log_p_z"))
    _check_same_shape(log_p_x_given_z, log_q_z, ("log_p_x_given_z", "log_q_z"))
    if log_p_x_given_z.ndim < 1 or log_p_x_given_z.shape[0] < 1:
        raise ValueError(
            "importance_weighted_bound needs inputs of shape [K, ...] with K >= 1 samples on "
            f"axis 0, got shape {log_p_x_given_z.shape}"
        )
    num_samples = log_p_x_given_z.shape[0]
    log_w = log_p_x_given_z + log_p_z - log_q_z
    return jax.nn.logsumexp(log_w, axis=0) - math.log(num_samples)
