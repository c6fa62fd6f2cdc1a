"""The VAE family against independent computations: the objective's wiring (clean target,
corrupted input, KL weight), both decoders, the L_k estimator, chunked evaluation, active
units, and the VampPrior."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import norm

from aevb import models
from aevb.data import noise
from aevb.evaluation import measures
from aevb.families import vae as vae_family

D, L = 12, 3


def _model(likelihood: str) -> tuple[models.VAE, dict]:
    model = models.dense_vae((16,), L, D, likelihood)
    params = vae_family.VAEFamily().init_params(model, jax.random.key(0), (1, D, 1))
    return model, params


def _binary(n: int, seed: int = 1) -> jax.Array:
    return jax.random.bernoulli(jax.random.key(seed), 0.4, (n, D)).astype(jnp.float32)


def _log_p_x_given_z(model, params, z: np.ndarray, x: np.ndarray) -> np.ndarray:
    """log p(x|z) [...] in float64 numpy from the decoder's raw outputs."""
    likelihood = model.apply(params, jnp.asarray(z, jnp.float32), method=model.decode)
    if isinstance(likelihood, models.Bernoulli):
        logits = np.asarray(likelihood.logits, np.float64)
        return np.sum(x * logits - np.logaddexp(0, logits), axis=-1)
    loc, log_var = (np.asarray(a, np.float64) for a in (likelihood.loc, likelihood.log_var))
    return np.sum(norm.logpdf(x, loc, np.exp(0.5 * log_var)), axis=-1)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_objective_scores_the_clean_x_from_the_corrupted_input(likelihood):
    """loss = kl_weight * KL(q(z|x~)) - log p(x|z), z from q(z|x~), x~ = masked x."""
    model, params = _model(likelihood)
    x = _binary(6)
    key = jax.random.key(7)
    terms = vae_family.vae_terms(model, params, x, key, noise_kind="masking", noise_rate=0.5,
                                 kl_weight=0.3)
    noise_key, sample_key = jax.random.split(key)
    x_in = noise.masking(x, noise_key, 0.5)
    assert not np.array_equal(x_in, x)
    posterior = model.apply(params, x_in, method=model.encode)
    mu, log_var = (np.asarray(a, np.float64) for a in (posterior.loc, posterior.log_var))
    eps = np.asarray(jax.random.normal(sample_key, mu.shape), np.float64)
    z = mu + np.exp(0.5 * log_var) * eps
    recon = -_log_p_x_given_z(model, params, z, np.asarray(x, np.float64))
    kl = 0.5 * np.sum(np.exp(log_var) + mu**2 - 1 - log_var, axis=-1)
    np.testing.assert_allclose(terms["recon"], recon, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(terms["kl"], kl, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(terms["loss"], 0.3 * kl + recon, rtol=1e-4, atol=1e-4)
    # Scoring the corrupted input instead would be a different number.
    wrong = -_log_p_x_given_z(model, params, z, np.asarray(x_in, np.float64))
    assert not np.allclose(terms["recon"], wrong, rtol=1e-3)


def _lk(model, params, x, k, samples_per_chunk=20_000, seed=3, codes_per_block=2_000):
    return np.asarray(vae_family.importance_weighted_log_likelihood(
        model, params, x, jax.random.key(seed), k, samples_per_chunk,
        codes_per_block=codes_per_block), np.float64)


@pytest.mark.parametrize("likelihood, codes_per_block", [
    ("bernoulli", 2_000), ("gaussian", 2_000),
    ("bernoulli", 40)])  # the 64 x 5 codes decoded in 8 blocks of [8, 5]
def test_lk_equals_an_independent_computation(likelihood, codes_per_block):
    """One chunk (its key: fold_in(key, 0)): L_k from the same draws, in float64 numpy."""
    model, params = _model(likelihood)
    x = _binary(5) if likelihood == "bernoulli" else jax.random.uniform(jax.random.key(2),
                                                                          (5, D))
    k = 64
    assert measures.samples_per_block(k, 5, codes_per_block) == min(k, codes_per_block // 5)
    lk = _lk(model, params, x, k, codes_per_block=codes_per_block)
    posterior = model.apply(params, x, method=model.encode)
    mu, log_var = (np.asarray(a, np.float64) for a in (posterior.loc, posterior.log_var))
    eps = np.asarray(jax.random.normal(jax.random.fold_in(jax.random.key(3), 0), (k, 5, L)))
    sigma = np.exp(0.5 * log_var)
    z = mu + sigma * eps
    log_w = (_log_p_x_given_z(model, params, z, np.asarray(x, np.float64))
             + norm.logpdf(z).sum(-1) - norm.logpdf(z, mu, sigma).sum(-1))
    np.testing.assert_allclose(lk, logsumexp(log_w, axis=0) - np.log(k), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_l1_is_the_elbo_in_expectation(likelihood):
    """With k = 1, the mean of L_1 over many draws is the -ELBO's mean (closed-form KL),
    within Monte Carlo error."""
    model, params = _model(likelihood)
    x = jnp.tile(_binary(4), (2000, 1))                        # 4 examples x 2000 draws
    l1 = _lk(model, params, x, 1)
    neg_elbo = np.asarray(vae_family.elbo_terms(model, params, x, jax.random.key(9), 1000)
                          ["neg_elbo"], np.float64)
    diff = l1 + neg_elbo                                       # independent draws
    assert abs(diff.mean()) < 4 * diff.std() / np.sqrt(diff.size), (diff.mean(), diff.std())


def test_lk_grows_with_k_and_does_not_depend_on_chunking():
    model, params = _model("bernoulli")
    x = _binary(200)
    means = {k: _lk(model, params, x, k).mean() for k in (1, 10, 100)}
    assert means[1] < means[10] < means[100], means
    one_chunk = _lk(model, params, x, 100, samples_per_chunk=100 * 200)
    small = _lk(model, params, x, 100, samples_per_chunk=100 * 7)     # 29 chunks, padded
    diff = one_chunk - small
    assert not np.allclose(one_chunk, small)  # other draws...
    assert abs(diff.mean()) < 4 * diff.std() / np.sqrt(diff.size) + 1e-6  # ...same estimate


def test_map_in_chunks_pads_and_drops_the_padding():
    """23 rows in chunks of 5: the last chunk is padded; outputs are the per-row values,
    each chunk drawing from fold_in(key, chunk index)."""
    x = jnp.arange(23 * 2, dtype=jnp.float32).reshape(23, 2)
    key = jax.random.key(4)
    fn = lambda xc, k: {"sum": xc.sum(-1), "u": jax.random.uniform(k, (xc.shape[0],))}
    out = jax.jit(lambda x, k: measures.map_in_chunks(fn, x, k, 5))(x, key)
    assert out["sum"].shape == out["u"].shape == (23,)
    np.testing.assert_array_equal(out["sum"], np.asarray(x).sum(-1))
    for i in range(5):
        expected = jax.random.uniform(jax.random.fold_in(key, i), (5,))[:len(out["u"][5 * i:])]
        np.testing.assert_array_equal(out["u"][5 * i:5 * i + 5], expected)


def test_active_units_against_known_variances():
    """Columns with variance exactly 0, 0.005, 0.0099, 0.0101, 0.5: two above 0.01."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(1000, 5))
    z = (z - z.mean(0)) / z.std(0)
    variances = np.array([0.0, 0.005, 0.0099, 0.0101, 0.5])
    count, measured = vae_family.active_units(z * np.sqrt(variances) + 3.0)
    np.testing.assert_allclose(measured, variances, atol=1e-12)
    assert count == 2


def _vampprior(num_pseudo_inputs: int) -> tuple[models.VAE, dict]:
    model = models.dense_vae((16,), L, D).clone(prior="vampprior",
                                                num_pseudo_inputs=num_pseudo_inputs, input_dim=D)
    params = vae_family.VAEFamily().init_params(model, jax.random.key(0), (1, D, 1))
    # Pseudo-inputs spread over [0, 1] and beyond it (the clip must act).
    params["params"]["pseudo_inputs"] = jax.random.uniform(
        jax.random.key(5), (num_pseudo_inputs, D), minval=-0.5, maxval=1.5)
    return model, params


def test_vampprior_is_the_mixture_of_the_posteriors_at_the_clipped_pseudo_inputs():
    """log p(z) = logsumexp_k log q(z|u_k) - log K, u_k clipped to [0, 1], in float64."""
    model, params = _vampprior(6)
    prior = model.apply(params, method=model.prior_distribution)
    u = np.clip(np.asarray(params["params"]["pseudo_inputs"]), 0.0, 1.0)
    q = model.apply(params, jnp.asarray(u), method=model.encode)
    loc, log_var = (np.asarray(a, np.float64) for a in (q.loc, q.log_var))
    z = np.asarray(jax.random.normal(jax.random.key(1), (4, 3, L)), np.float64)
    per_component = norm.logpdf(z[..., None, :], loc, np.exp(0.5 * log_var)).sum(-1)
    expected = logsumexp(per_component, axis=-1) - np.log(6)
    np.testing.assert_allclose(prior.log_prob(jnp.asarray(z, jnp.float32)), expected,
                               rtol=1e-5, atol=1e-4)
    draws = np.asarray(prior.sample(jax.random.key(2), 5000))
    assert draws.shape == (5000, L)
    # The draws' mean is the components' mean mean (sd of the mean < 0.05 here).
    np.testing.assert_allclose(draws.mean(0), loc.mean(0), atol=0.1)


def _pinned(model, params):
    """The params with q(z|u) = N(0, I) at the one pseudo-input u: mean_log_var's bias is
    minus its matmul's output there (q(z|x) elsewhere still depends on x)."""
    head = params["params"]["encoder"]["mean_log_var"]
    zero_bias = jax.tree.map(lambda a: a, params)
    zero_bias["params"]["encoder"]["mean_log_var"] = {**head, "bias": jnp.zeros_like(
        head["bias"])}
    u = jnp.clip(params["params"]["pseudo_inputs"], 0.0, 1.0)
    q = model.apply(zero_bias, u, method=model.encode)
    pinned = jax.tree.map(lambda a: a, params)
    pinned["params"]["encoder"]["mean_log_var"] = {
        **head, "bias": -jnp.concatenate([q.loc, q.log_var], axis=-1)[0]}
    return pinned


def test_one_pseudo_input_with_a_standard_normal_posterior_is_the_standard_prior():
    """K = 1, q(z|u) pinned to N(0, I): log p(z) is N(0, I)'s and L_k on the same draws is
    the standard-prior VAE's with the same weights."""
    model, params = _vampprior(1)
    params = _pinned(model, params)
    prior = model.apply(params, method=model.prior_distribution)
    np.testing.assert_allclose(prior.loc, 0.0, atol=1e-6)
    np.testing.assert_allclose(prior.log_var, 0.0, atol=1e-6)
    z = jax.random.normal(jax.random.key(1), (4, 3, L)) * 2.0
    np.testing.assert_allclose(prior.log_prob(z), norm.logpdf(np.asarray(z)).sum(-1),
                               rtol=1e-5, atol=1e-4)
    standard = models.dense_vae((16,), L, D)
    standard_params = {"params": {k: v for k, v in params["params"].items()
                                  if k != "pseudo_inputs"}}
    x = _binary(5)
    np.testing.assert_allclose(_lk(model, params, x, 64), _lk(standard, standard_params, x, 64),
                               rtol=1e-5, atol=1e-4)


def test_sampled_kl_elbo_agrees_with_the_closed_form_one():
    """K = 1 (not pinned), a corrupted input: the objective's KL, estimated from one sample
    per draw, averages over 4,000 draws to the closed-form KL(q(z|x~) || q(z|u)) within 3
    standard errors; recon + kl = neg_elbo, and the reconstruction scores the clean x."""
    model, params = _vampprior(1)
    x = jnp.tile(_binary(2), (2000, 1))                         # 2 examples x 2000 draws
    key = jax.random.key(7)
    terms = jax.jit(lambda p, x, k: vae_family.vae_terms(
        model, p, x, k, noise_kind="masking", noise_rate=0.3))(params, x, key)
    x_in = noise.masking(x, jax.random.split(key)[0], 0.3)
    q = model.apply(params, x_in, method=model.encode)
    prior = model.apply(params, method=model.prior_distribution)
    m1, v1 = np.asarray(q.loc, np.float64), np.exp(np.asarray(q.log_var, np.float64))
    m2, v2 = np.asarray(prior.loc, np.float64), np.exp(np.asarray(prior.log_var, np.float64))
    closed = 0.5 * np.sum(np.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / v2 - 1.0, axis=-1)
    diff = np.asarray(terms["kl"], np.float64) - closed         # zero mean, per draw
    assert abs(diff.mean()) < 3 * diff.std() / np.sqrt(diff.size), (diff.mean(), diff.std())
    assert diff.std() > 0.01                                    # a sample, not the closed form
    np.testing.assert_allclose(terms["neg_elbo"], terms["recon"] + terms["kl"], rtol=1e-5)
    np.testing.assert_allclose(terms["loss"], terms["neg_elbo"], rtol=1e-5)
    z = np.asarray(q.sample(jax.random.split(key)[1], 1)[0], np.float64)  # the same draws
    np.testing.assert_allclose(terms["recon"], -_log_p_x_given_z(
        model, params, z, np.asarray(x, np.float64)), rtol=1e-4, atol=1e-3)
