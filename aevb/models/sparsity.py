"""Sparsity penalties of a sparse autoencoder's code: the KL divergence between a target
activation and each unit's mean activation over the batch, or an L1 penalty.
"""

from __future__ import annotations

import math
from numbers import Real

import jax
import jax.numpy as jnp

from aevb.models.losses import _check_event_axis


def kl_sparsity_penalty(code_logits: jax.Array, target: float | jax.Array) -> jax.Array:
    """KL sparsity penalty ``sum_j KL(rho || rho_hat_j)`` of a sparse autoencoder's sigmoid code.

    ``rho_hat_j = mean_b sigmoid(a_bj)`` is the mean activation of coding unit ``j`` over the
    batch and ``KL(rho || q) = rho log(rho / q) + (1 - rho) log((1 - rho) / (1 - q))``.
    A BATCH STATISTIC, not a per-example loss, so it returns a scalar: sparsity is a property
    of a unit's average activity across inputs. (Its value depends on the batch size
    through ``rho_hat``'s noise; the caller adds it, weighted, to the batch-mean loss.)

    It takes the code's PRE-ACTIVATIONS ``a`` and computes ``log rho_hat`` and
    ``log(1 - rho_hat)`` as log-mean-exps of ``log_sigmoid(a)`` and ``log_sigmoid(-a)``, so
    no clipping is needed: a unit whose activations sit at 1e-9 over the whole batch (``a``
    near -20) still gets the gradient that pulls it back towards ``rho``.

    Args:
      code_logits: ``[B, J]`` pre-activations of the sigmoid coding units.
      target: ``rho``, the desired mean activation, a Python float or scalar in ``(0, 1)``.

    Returns:
      Scalar: the divergence summed over the ``J`` units.
    """
    if isinstance(target, Real) and not 0.0 < float(target) < 1.0:
        raise ValueError(f"target must lie in (0, 1), got {target}")
    code_logits = jnp.asarray(code_logits)
    if code_logits.ndim != 2:
        raise ValueError(f"code_logits must have shape [B, J], got shape {code_logits.shape}")
    rho = jnp.asarray(target, dtype=code_logits.dtype)
    if rho.ndim != 0:
        raise ValueError(f"target must be a scalar, got shape {rho.shape}")
    log_batch = math.log(code_logits.shape[0])
    log_rho_hat = jax.nn.logsumexp(jax.nn.log_sigmoid(code_logits), axis=0) - log_batch
    log_1m_rho_hat = jax.nn.logsumexp(jax.nn.log_sigmoid(-code_logits), axis=0) - log_batch
    per_unit = (rho * (jnp.log(rho) - log_rho_hat)
                + (1.0 - rho) * (jnp.log1p(-rho) - log_1m_rho_hat))
    return jnp.sum(per_unit)


def l1_activity_penalty(codes: jax.Array) -> jax.Array:
    """Per-example L1 activity penalty ``sum_j |codes_j|``.

    The sparsity regulariser on hidden activations (as in Keras' ``activity_regularizer=l1``,
    without the weight, which the caller applies).

    Args:
      codes: ``[..., J]`` hidden activations.

    Returns:
      ``[...]`` penalty per example.
    """
    codes = jnp.asarray(codes)
    _check_event_axis(codes, "codes")
    return jnp.sum(jnp.abs(codes), axis=-1)
