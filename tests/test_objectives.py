"""The VAE's k-sample objectives, the KL warm-up and the learning-rate schedules, against
independent computations (float64 numpy from the model's raw outputs) and known values."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.special import logsumexp
from scipy.stats import norm

from aevb import data as data_lib
from aevb import models
from aevb.config import defaults
from aevb.data import noise
from aevb.families import vae as vae_family
from aevb.training import schedules, train_state

D, L = 12, 3


def _model(likelihood: str = "bernoulli"):
    model = models.dense_vae((16,), L, D, likelihood)
    return model, vae_family.VAEFamily().init_params(model, jax.random.key(0), (1, D, 1))


def _data(likelihood: str, n: int = 5) -> jax.Array:
    if likelihood == "bernoulli":
        return jax.random.bernoulli(jax.random.key(1), 0.4, (n, D)).astype(jnp.float32)
    return jax.random.uniform(jax.random.key(1), (n, D))


def _draws(model, params, x, key, k, x_in=None):
    """(mu, sigma, log p(x|z_i), log p(z_i), log q(z_i|x~)) in float64 with the objective's
    own draws: eps ~ N(0, I) [k, B, L] from the second half of split(key); the posterior
    of x~ = x_in (default: x), the likelihood of x."""
    _, sample_key = jax.random.split(key)
    posterior = model.apply(params, x if x_in is None else x_in, method=model.encode)
    mu, log_var = (np.asarray(a, np.float64) for a in (posterior.loc, posterior.log_var))
    sigma = np.exp(0.5 * log_var)
    eps = np.asarray(jax.random.normal(sample_key, (k, *mu.shape)), np.float64)
    z = mu + sigma * eps
    x64 = np.asarray(x, np.float64)
    log_px = []
    for i in range(k):  # one sample at a time, through the decoder alone
        out = model.apply(params, jnp.asarray(z[i], jnp.float32), method=model.decode)
        if isinstance(out, models.Bernoulli):
            logits = np.asarray(out.logits, np.float64)
            log_px.append(np.sum(x64 * logits - np.logaddexp(0, logits), -1))
        else:
            loc, lv = np.asarray(out.loc, np.float64), np.asarray(out.log_var, np.float64)
            log_px.append(np.sum(norm.logpdf(x64, loc, np.exp(0.5 * lv)), -1))
    log_pz = norm.logpdf(z).sum(-1)
    log_qz = norm.logpdf(z, mu, sigma).sum(-1)
    return mu, sigma, np.stack(log_px), log_pz, log_qz


def _terms(model, params, x, key, k, objective, **kw):
    """The objective's terms, compiled as one program (as the train step compiles them)."""
    def terms(params, x, key):
        return vae_family.vae_terms(model, params, x, key, num_samples=k, objective=objective,
                                    **kw)
    return jax.jit(terms)(params, x, key)


@pytest.mark.parametrize("likelihood, masked", [("bernoulli", False), ("gaussian", False),
                                                ("bernoulli", True)])
def test_iwae_objective_is_lk_by_brute_force(likelihood, masked):
    """L_k of the clean x; with masking noise (a denoising VAE), q(z|x~) of the masked x."""
    model, params = _model(likelihood)
    x, key, k = _data(likelihood), jax.random.key(5), 7
    noise_kw = {"noise_kind": "masking", "noise_rate": 0.5} if masked else {}
    terms = _terms(model, params, x, key, k, "iwae", **noise_kw)
    x_in = noise.masking(x, jax.random.split(key)[0], 0.5) if masked else None
    _, _, log_px, log_pz, log_qz = _draws(model, params, x, key, k, x_in)
    lk = logsumexp(log_px + log_pz - log_qz, axis=0) - np.log(k)
    np.testing.assert_allclose(-np.asarray(terms["loss"]), lk, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_k_sample_elbo_is_the_mean_of_single_sample_elbos(likelihood):
    """Same draws: the k-sample ELBO is the mean of the k one-sample ELBOs (closed-form KL)."""
    model, params = _model(likelihood)
    x, key, k = _data(likelihood), jax.random.key(6), 5
    terms = _terms(model, params, x, key, k, "elbo", kl_weight=0.7)
    mu, sigma, log_px, _, _ = _draws(model, params, x, key, k)
    kl = 0.5 * np.sum(sigma**2 + mu**2 - 1 - 2 * np.log(sigma), -1)
    singles = [0.7 * kl - log_px[i] for i in range(k)]
    np.testing.assert_allclose(terms["loss"], np.mean(singles, axis=0), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(terms["neg_elbo"], kl - log_px.mean(0), rtol=1e-4, atol=1e-3)


def test_one_sample_elbo_is_unchanged_bit_for_bit():
    """k = 1 with the ELBO is the Kingma & Welling objective as computed before k existed:
    one forward pass, closed-form KL."""
    model, params = _model()
    x, key = _data("bernoulli"), jax.random.key(7)
    terms = vae_family.vae_terms(model, params, x, key, num_samples=1, objective="elbo",
                                 kl_weight=0.3)  # op by op, as the reference below
    out = model.apply(params, x, jax.random.split(key)[1])
    kl, log_lik = out.posterior.kl_from_standard_normal(), out.likelihood.log_prob(x)
    np.testing.assert_array_equal(terms["loss"], 0.3 * kl - log_lik)


def test_l1_is_the_elbo_with_a_one_sample_kl():
    """IWAE at k = 1: exactly -(log p(x|z) + log p(z) - log q(z|x)) of its one draw, and in
    expectation the -ELBO with the closed-form KL."""
    model, params = _model()
    x, key = _data("bernoulli"), jax.random.key(8)
    _, _, log_px, log_pz, log_qz = _draws(model, params, x, key, 1)
    np.testing.assert_allclose(_terms(model, params, x, key, 1, "iwae")["loss"],
                               -(log_px + log_pz - log_qz)[0], rtol=1e-4, atol=1e-3)
    many = jnp.tile(x, (4000, 1))
    iwae = np.asarray(_terms(model, params, many, key, 1, "iwae")["loss"], np.float64)
    elbo = np.asarray(_terms(model, params, many, jax.random.key(9), 1, "elbo")["loss"],
                      np.float64)
    diff = iwae - elbo
    assert abs(diff.mean()) < 4 * diff.std() / np.sqrt(diff.size), (diff.mean(), diff.std())


def test_lk_objective_does_not_decrease_with_k():
    model, params = _model()
    x = jnp.tile(_data("bernoulli", 10), (100, 1))
    bound = {k: -float(np.mean(_terms(model, params, x, jax.random.key(k), k, "iwae")["loss"]))
             for k in (1, 5, 50)}
    assert bound[1] < bound[5] < bound[50], bound


def test_kl_weight_rises_linearly_over_the_warmup():
    model, params = _model()
    x, key = _data("bernoulli"), jax.random.key(10)
    for step, factor in [(0, 0.0), (5, 0.5), (10, 1.0), (25, 1.0)]:
        terms = _terms(model, params, x, key, 1, "elbo", kl_weight=0.8, warmup_steps=10,
                       step=jnp.asarray(step))
        np.testing.assert_allclose(terms["kl_weight"], 0.8 * factor)
        np.testing.assert_allclose(terms["loss"], 0.8 * factor * terms["kl"] + terms["recon"],
                                   rtol=1e-6)
        np.testing.assert_allclose(terms["neg_elbo"], terms["kl"] + terms["recon"], rtol=1e-6)


def test_iwae_schedule_is_the_papers_at_3280_epochs():
    """3^i epochs at 10^(-i/7) of the peak: stage i begins after 3^0 + ... + 3^(i-1) epochs."""
    steps_per_epoch = 3
    fn = schedules.shape("iwae", 3280 * steps_per_epoch)
    begins = [0, 1, 4, 13, 40, 121, 364, 1093]
    assert begins[-1] + 3**7 == 3280 == schedules.IWAE_PASSES
    for i, epoch_begin in enumerate(begins):
        step = epoch_begin * steps_per_epoch
        assert float(fn(step)) == pytest.approx(10 ** (-i / 7), rel=1e-6), i
        if i:
            assert float(fn(step - 1)) == pytest.approx(10 ** (-(i - 1) / 7), rel=1e-6), i
    assert float(fn(3280 * steps_per_epoch - 1)) == pytest.approx(0.1, rel=1e-6)


def test_iwae_schedule_keeps_its_proportions_when_compressed():
    fn = schedules.shape("iwae", 1640 * 100)  # half the passes: stage i lasts 3^i / 2
    assert float(fn(int(1093 / 2 * 100) - 1)) == pytest.approx(10 ** (-6 / 7), rel=1e-6)
    assert float(fn(int(1093 / 2 * 100))) == pytest.approx(0.1, rel=1e-6)


@pytest.mark.parametrize("name", ["constant", "cosine", "iwae"])
def test_optimizer_applies_and_reports_the_scheduled_rate(name):
    """Plain SGD on a linear loss moves each parameter by exactly the rate in force, and
    the state reports that rate (peak x the schedule's factor at the step)."""
    section = type("S", (), {"optimizer": "sgd", "learning_rate": 0.5, "lr_schedule": name,
                             "weight_decay": 0.0, "adam_eps": 1e-8})
    total = 20
    tx = train_state.make_optimizer(section, total)
    params = jnp.zeros(())
    state = tx.init(params)
    shape = schedules.shape(name, total)
    if name == "cosine":
        np.testing.assert_allclose(shape(7), optax.cosine_decay_schedule(1.0, total)(7))
    for step in range(total):
        updates, state = tx.update(jnp.ones(()), state, params)
        expected = 0.5 * float(shape(step))
        assert float(-updates) == pytest.approx(expected, rel=1e-6), step
        assert float(train_state.current_learning_rate(state)) == pytest.approx(expected, rel=1e-6)


def test_normalized_gradients_are_adam_on_unit_norm_tensors():
    """train.normalize_gradients: each gradient tensor is divided by its L2 norm before
    Adam (the VampPrior's AdamNormGrad), against optax's Adam on gradients normalised here."""
    config = defaults.base_config()
    config.train.normalize_gradients = True
    tx = train_state.make_optimizer(config.train, 10)
    params = {"a": jnp.ones((3, 2)), "b": jnp.zeros(4)}
    grads = {"a": jnp.arange(6.0).reshape(3, 2), "b": jnp.asarray([3.0, 0.0, 4.0, 0.0])}
    reference = optax.adam(config.train.learning_rate)
    state, ref_state = tx.init(params), reference.init(params)
    for _ in range(3):
        updates, state = tx.update(grads, state, params)
        unit = jax.tree.map(lambda g: g / (np.linalg.norm(g) + 1e-7), grads)
        expected, ref_state = reference.update(unit, ref_state, params)
        for name in params:
            np.testing.assert_allclose(updates[name], expected[name], rtol=1e-6)
        grads = jax.tree.map(lambda g: 2 * g + 1, grads)


def test_dequantization_and_bits_per_dim():
    grey = jnp.arange(256, dtype=jnp.float32) / 255.0
    y = np.asarray(data_lib.binarize(grey, "dequantize", jax.random.key(0)))
    g = np.arange(256)
    assert np.all(y >= g / 256) and np.all(y < (g + 1) / 256)
    # The uniform density on [0, 1)^D (log p = 0) is 8 bits per dimension of 8-bit data.
    assert data_lib.bits_per_dim(0.0, 784) == pytest.approx(8.0)
    assert data_lib.bits_per_dim(-784 * np.log(2), 784) == pytest.approx(9.0)
