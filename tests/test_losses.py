"""Tests for aevb.losses.

Every expected value is computed independently in float64 numpy/scipy (scipy.stats.norm,
scipy.special.expit / logsumexp, closed forms), never by calling the function under test.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy.special import expit, log_expit
from scipy.special import logsumexp as np_logsumexp
from scipy.stats import norm

from aevb.models import iwae, losses, sparsity

RTOL32 = 1e-5
ATOL32 = 1e-5


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def f32(a: np.ndarray) -> jax.Array:
    return jnp.asarray(np.asarray(a, dtype=np.float32))


def assert_close32(actual: jax.Array, expected: np.ndarray) -> None:
    assert actual.dtype == jnp.float32
    assert actual.shape == np.shape(expected)
    np.testing.assert_allclose(np.asarray(actual), expected, rtol=RTOL32, atol=ATOL32)


# --------------------------------------------------------------------------------------
# Values against numpy / scipy references.
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("binary", [True, False], ids=["binary_x", "grey_x"])
def test_bernoulli_log_likelihood_and_cross_entropy_match_scipy(rng, binary):
    logits = rng.normal(scale=4.0, size=(6, 20))
    x = (rng.uniform(size=(6, 20)) < 0.5).astype(float) if binary else rng.uniform(size=(6, 20))
    # Round-trip through float32 so the reference sees exactly the inputs the function sees.
    logits, x = np.float32(logits).astype(np.float64), np.float32(x).astype(np.float64)
    expected = np.sum(x * np.log(expit(logits)) + (1 - x) * np.log(expit(-logits)), axis=-1)

    assert_close32(losses.bernoulli_log_likelihood(f32(logits), f32(x)), expected)
    assert_close32(losses.bernoulli_cross_entropy(f32(logits), f32(x)), -expected)


def test_softplus_and_its_gradient_match_scipy():
    """The value is -log sigmoid(-x), the gradient sigmoid(x), finite at saturated logits."""
    x = np.concatenate([np.linspace(-40, 40, 2001), [0.0, 1e4, -1e4, 88.0, -88.0]]
                       ).astype(np.float32)
    np.testing.assert_allclose(losses.softplus(x), -log_expit(-x.astype(np.float64)),
                               rtol=1e-6, atol=1e-7)
    grad = jax.vmap(jax.grad(losses.softplus))(jnp.asarray(x))
    np.testing.assert_allclose(grad, expit(x.astype(np.float64)), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("log_var_shape", [(6, 8), (8,), ()], ids=["full", "per_dim", "scalar"])
def test_gaussian_log_likelihood_matches_scipy(rng, log_var_shape):
    x = np.float32(rng.normal(size=(6, 8))).astype(np.float64)
    mean = np.float32(rng.normal(size=(6, 8))).astype(np.float64)
    log_var = np.float32(rng.uniform(-2.0, 2.0, size=log_var_shape)).astype(np.float64)
    expected = norm.logpdf(x, loc=mean, scale=np.exp(0.5 * log_var)).sum(axis=-1)

    actual = losses.gaussian_log_likelihood(f32(x), f32(mean), f32(log_var))
    assert_close32(actual, expected)


def test_standard_normal_log_density_matches_scipy(rng):
    z = np.float32(rng.normal(scale=2.0, size=(5, 7))).astype(np.float64)
    assert_close32(losses.standard_normal_log_density(f32(z)), norm.logpdf(z).sum(axis=-1))


@pytest.mark.parametrize("z_shape", [(6, 5), (3, 4, 5)], ids=["batch", "samples_batch"])
def test_gaussian_mixture_log_density_matches_scipy(rng, z_shape):
    """The VampPrior's log p(z): 7 components with log-variances down to -6 (the clip's
    floor, where the matmul form's cancellation is worst), against a float64 logsumexp of
    scipy's per-component densities."""
    loc = np.float32(rng.normal(size=(7, 5))).astype(np.float64)
    log_var = np.float32(rng.uniform(-6.0, 2.0, size=(7, 5))).astype(np.float64)
    z = np.float32(loc[rng.integers(0, 7, z_shape[:-1])]
                   + 0.1 * rng.normal(size=z_shape)).astype(np.float64)
    per_component = norm.logpdf(z[..., None, :], loc, np.exp(0.5 * log_var)).sum(-1)
    expected = np_logsumexp(per_component, axis=-1) - np.log(7)
    actual = losses.gaussian_mixture_log_density(f32(z), f32(loc), f32(log_var))
    assert actual.shape == z_shape[:-1]
    np.testing.assert_allclose(np.asarray(actual), expected, rtol=1e-5, atol=2e-3)


def test_kl_standard_normal_matches_general_gaussian_kl(rng):
    mean = np.float32(rng.normal(size=(5, 4))).astype(np.float64)
    log_var = np.float32(rng.uniform(-3.0, 2.0, size=(5, 4))).astype(np.float64)
    # General KL(N(m1, s1^2) || N(m2, s2^2)) = log(s2/s1) + (s1^2 + (m1-m2)^2) / (2 s2^2) - 1/2.
    s1, m2, s2 = np.exp(0.5 * log_var), 0.0, 1.0
    expected = (np.log(s2 / s1) + (s1**2 + (mean - m2) ** 2) / (2 * s2**2) - 0.5).sum(axis=-1)

    assert_close32(losses.kl_standard_normal(f32(mean), f32(log_var)), expected)


def test_kl_standard_normal_matches_monte_carlo():
    mean = np.array([0.5, -1.0, 2.0])
    log_var = np.array([-1.0, 0.0, 1.5])
    std = np.exp(0.5 * log_var)
    z = mean + std * np.random.default_rng(1).standard_normal(size=(200_000, 3))
    log_ratio = (norm.logpdf(z, mean, std) - norm.logpdf(z)).sum(axis=-1)
    estimate = log_ratio.mean()
    std_err = log_ratio.std() / math.sqrt(len(log_ratio))

    actual = float(losses.kl_standard_normal(f32(mean), f32(log_var)))
    assert abs(actual - estimate) < 5 * std_err, (actual, estimate, std_err)


def test_kl_standard_normal_is_zero_at_prior():
    np.testing.assert_allclose(losses.kl_standard_normal(jnp.zeros((2, 3)), jnp.zeros((2, 3))), 0.0)


def test_importance_weighted_bound_matches_scipy(rng):
    log_px_z, log_pz, log_qz = (np.float32(rng.normal(scale=3.0, size=(10, 4))) for _ in range(3))
    log_w = log_px_z.astype(np.float64) + log_pz - log_qz
    expected = np_logsumexp(log_w, axis=0) - np.log(10)

    actual = iwae.importance_weighted_bound(f32(log_px_z), f32(log_pz), f32(log_qz))
    assert_close32(actual, expected)


def test_importance_weighted_bound_single_sample_is_log_weight(rng):
    terms = [rng.normal(size=(1, 3)) for _ in range(3)]
    expected = (terms[0] + terms[1] - terms[2])[0]
    assert_close32(iwae.importance_weighted_bound(*map(f32, terms)), expected)


def test_mean_squared_error_matches_numpy(rng):
    x_hat, x = np.float32(rng.normal(size=(2, 3, 10))), np.float32(rng.normal(size=(2, 3, 10)))
    expected = np.mean((x_hat.astype(np.float64) - x) ** 2, axis=-1)
    assert_close32(losses.mean_squared_error(f32(x_hat), f32(x)), expected)


def test_mean_squared_error_is_per_pixel(rng):
    # Per-pixel MSE: a constant error of 0.5 on every pixel gives 0.25 whatever D is.
    for d in (4, 784):
        x = rng.uniform(size=(3, d))
        np.testing.assert_allclose(losses.mean_squared_error(f32(x + 0.5), f32(x)), 0.25, rtol=1e-5)


def test_l1_activity_penalty_matches_numpy(rng):
    codes = np.float32(rng.normal(size=(4, 9)))
    assert_close32(sparsity.l1_activity_penalty(f32(codes)), np.abs(codes.astype(float)).sum(-1))


# --------------------------------------------------------------------------------------
# Importance-weighted bound on a linear-Gaussian model with known log p(x).
#   z ~ N(0, I),  x | z ~ N(z, I)   =>   p(x) = N(0, 2I),  p(z | x) = N(x/2, I/2).
# --------------------------------------------------------------------------------------

_N_X, _D, _K_MAX = 1000, 3, 1000


def _linear_gaussian_log_terms(q_mean_fn, q_log_var: float, seed: int):
    """x [N, D], log terms [K_MAX, N] and exact log p(x) [N], with z ~ q(z | x).

    q(z | x) = N(q_mean_fn(x), exp(q_log_var) I).
    """
    x = np.random.default_rng(seed).normal(scale=math.sqrt(2.0), size=(_N_X, _D))
    q_mean = q_mean_fn(x)
    noise = np.random.default_rng(seed + 1).standard_normal(size=(_K_MAX, _N_X, _D))
    z = q_mean + math.exp(0.5 * q_log_var) * noise
    x_b = jnp.broadcast_to(jnp.asarray(x), z.shape)
    log_px_z = losses.gaussian_log_likelihood(x_b, jnp.asarray(z), 0.0)
    log_pz = losses.standard_normal_log_density(jnp.asarray(z))
    log_qz = losses.gaussian_log_likelihood(
        jnp.asarray(z), jnp.broadcast_to(jnp.asarray(q_mean), z.shape), q_log_var
    )
    log_px = norm.logpdf(x, scale=math.sqrt(2.0)).sum(axis=-1)  # exact, [N]
    return x, log_px_z, log_pz, log_qz, log_px


def _mean_bound(log_px_z, log_pz, log_qz, k: int) -> np.ndarray:
    """L_k per x, averaged over the K_MAX // k disjoint groups of k samples: [N]."""
    groups = _K_MAX // k
    # Samples are iid, so any split into groups is valid; put the group's k on axis 0.
    split = [t[: groups * k].reshape(k, groups, -1) for t in (log_px_z, log_pz, log_qz)]
    return np.asarray(iwae.importance_weighted_bound(*split)).mean(axis=0)


def test_importance_weighted_bound_tightens_towards_log_px():
    with jax.enable_x64(True):
        # A deliberately poor q(z|x) = N(0, I) that ignores x.
        x, *terms, log_px = _linear_gaussian_log_terms(np.zeros_like, 0.0, seed=2)
        gap = {k: float(np.mean(_mean_bound(*terms, k) - log_px)) for k in (1, 10, 100, 1000)}

        # L_1 is on average the ELBO: E_q log p(x|z) - KL(q || p), in closed form here.
        elbo = (-0.5 * (math.log(2 * math.pi) + x**2 + 1.0)).sum(axis=-1)  # KL(N(0,I)||N(0,I))=0
        assert gap[1] == pytest.approx(float(np.mean(elbo - log_px)), abs=0.02)

    # Burda et al.: log p(x) >= L_k+1 >= L_k on average; margins are many standard errors.
    assert gap[1] < gap[10] - 0.5
    assert gap[10] < gap[100] - 0.1
    assert gap[100] < -0.01
    # ... and L_k -> log p(x).
    assert abs(gap[1000]) < 0.01
    assert abs(gap[1000]) < abs(gap[100]) / 3


def test_importance_weighted_bound_is_exact_under_true_posterior():
    with jax.enable_x64(True):
        _, *terms, log_px = _linear_gaussian_log_terms(lambda x: x / 2.0, math.log(0.5), seed=3)
        for k in (1, 7, 100):
            # log w = log p(x, z) - log p(z | x) = log p(x) for EVERY z, so L_k = log p(x).
            sliced = [t[:k] for t in terms]
            bound = np.asarray(iwae.importance_weighted_bound(*sliced))
            np.testing.assert_allclose(bound, log_px, rtol=0, atol=1e-10)


# --------------------------------------------------------------------------------------
# Extreme logits, gradient checks.
# --------------------------------------------------------------------------------------

_EXTREME_LOGITS = np.array([1e4, -1e4, 88.0, -88.0, 0.0, 30.0, -30.0], dtype=np.float32)


@pytest.mark.parametrize("x_value", [0.0, 0.5, 1.0])
def test_bernoulli_extreme_logits_finite_and_correct(x_value):
    logits = jnp.asarray(_EXTREME_LOGITS)[:, None]
    x = jnp.full_like(logits, x_value)
    ll = losses.bernoulli_log_likelihood(logits, x)
    grad_logits, grad_x = jax.grad(
        lambda lg, t: jnp.sum(losses.bernoulli_cross_entropy(lg, t)), argnums=(0, 1)
    )(logits, x)

    for arr in (ll, grad_logits, grad_x):
        assert np.all(np.isfinite(np.asarray(arr)))
    # Stable float64 reference: log sigmoid(l) = -logaddexp(0, -l).
    l64 = _EXTREME_LOGITS.astype(np.float64)
    expected = -x_value * np.logaddexp(0, -l64) - (1 - x_value) * np.logaddexp(0, l64)
    # Absolute error of a few float32 ulps of the logit (x*l - softplus(l) cancels at x=1).
    np.testing.assert_allclose(np.asarray(ll), expected, rtol=1e-6, atol=1e-5)
    # d BCE / d logit = sigmoid(l) - x.
    np.testing.assert_allclose(
        np.asarray(grad_logits)[:, 0], expit(l64) - x_value, rtol=1e-5, atol=1e-7
    )


def test_check_grads_float64(rng):
    with jax.enable_x64(True):
        logits = jnp.asarray(rng.normal(scale=3.0, size=(3, 4)))
        x = jnp.asarray(rng.uniform(size=(3, 4)))
        mean = jnp.asarray(rng.normal(size=(3, 4)))
        log_var = jnp.asarray(rng.uniform(-1.0, 1.0, size=(3, 4)))
        z = jnp.asarray(rng.normal(size=(3, 4)))
        code_logits = jnp.asarray(rng.normal(scale=2.0, size=(6, 5)))
        assert logits.dtype == jnp.float64

        kw = {"order": 2, "modes": ["rev"]}
        check_grads(jax.jit(losses.bernoulli_log_likelihood), (logits, x), **kw)
        check_grads(jax.jit(losses.gaussian_log_likelihood), (z, mean, log_var), **kw)
        check_grads(jax.jit(losses.kl_standard_normal), (mean, log_var), **kw)
        check_grads(jax.jit(lambda a: sparsity.kl_sparsity_penalty(a, 0.1)), (code_logits,), **kw)


# --------------------------------------------------------------------------------------
# Shapes: event axis is the last one; jit == eager; batched == stacked per-example.
# --------------------------------------------------------------------------------------


def _normal(rng, shape):
    return f32(rng.normal(size=shape))


def _unit(rng, shape):
    return f32(rng.uniform(size=shape))


# name -> (function, makers for each argument of shape [..., D])
EVENT_FNS = {
    "bernoulli_log_likelihood": (losses.bernoulli_log_likelihood, (_normal, _unit)),
    "bernoulli_cross_entropy": (losses.bernoulli_cross_entropy, (_normal, _unit)),
    "gaussian_log_likelihood": (losses.gaussian_log_likelihood, (_normal, _normal, _normal)),
    "standard_normal_log_density": (losses.standard_normal_log_density, (_normal,)),
    "kl_standard_normal": (losses.kl_standard_normal, (_normal, _normal)),
    "mean_squared_error": (losses.mean_squared_error, (_normal, _normal)),
    "l1_activity_penalty": (sparsity.l1_activity_penalty, (_normal,)),
}


@pytest.mark.parametrize("name", list(EVENT_FNS))
def test_sums_last_axis_only_and_jit_matches_eager(rng, name):
    fn, makers = EVENT_FNS[name]
    args = [make(rng, (2, 3, 5)) for make in makers]  # [K, B, D]
    eager = fn(*args)
    assert eager.shape == (2, 3)
    np.testing.assert_allclose(jax.jit(fn)(*args), eager, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", list(EVENT_FNS))
def test_batched_equals_stacked_single_examples(rng, name):
    fn, makers = EVENT_FNS[name]
    args = [make(rng, (4, 6)) for make in makers]  # [B, D]
    singles = [fn(*(a[i] for a in args)) for i in range(4)]  # each [D] -> scalar
    assert all(s.shape == () for s in singles)
    np.testing.assert_allclose(fn(*args), jnp.stack(singles), rtol=1e-6, atol=1e-6)


def test_importance_weighted_bound_shapes_jit_and_batching(rng):
    terms = [_normal(rng, (8, 4, 3)) for _ in range(3)]  # [K, B, C]
    out = iwae.importance_weighted_bound(*terms)
    assert out.shape == (4, 3)
    np.testing.assert_allclose(jax.jit(iwae.importance_weighted_bound)(*terms), out, rtol=1e-6)
    singles = [iwae.importance_weighted_bound(*(t[:, i, 0] for t in terms)) for i in range(4)]
    assert singles[0].shape == ()
    np.testing.assert_allclose(out[:, 0], jnp.stack(singles), rtol=1e-6)


def test_sparsity_penalty_jit_matches_eager(rng):
    logits = _normal(rng, (16, 5))
    jitted = jax.jit(sparsity.kl_sparsity_penalty, static_argnums=1)
    np.testing.assert_allclose(jitted(logits, 0.1), sparsity.kl_sparsity_penalty(logits, 0.1),
                               rtol=1e-6)


# --------------------------------------------------------------------------------------
# Shape errors.
# --------------------------------------------------------------------------------------

_A, _B = (4, 5), (4, 1)  # _B broadcasts against _A: it must still be refused.


@pytest.mark.parametrize(
    ("fn", "shapes"),
    [
        (losses.bernoulli_log_likelihood, (_A, _B)),
        (losses.bernoulli_cross_entropy, (_A, (5,))),
        (losses.gaussian_log_likelihood, (_A, _B, _A)),
        (losses.kl_standard_normal, (_A, _B)),
        (iwae.importance_weighted_bound, (_A, _A, _B)),
        (iwae.importance_weighted_bound, (_A, (3, 5), _A)),
        (losses.mean_squared_error, (_A, (4, 6))),
    ],
)
def test_mismatched_shapes_raise_naming_both(fn, shapes):
    args = [jnp.zeros(s) for s in shapes]
    with pytest.raises(ValueError, match="shape") as info:
        fn(*args)
    message = str(info.value)
    assert any(
        str(shapes[i]) in message and str(shapes[j]) in message
        for i in range(len(shapes))
        for j in range(len(shapes))
        if shapes[i] != shapes[j]
    ), message


@pytest.mark.parametrize("log_var_shape", [(4, 6), (6,), (4, 5, 1)])
def test_gaussian_log_var_must_broadcast_to_mean(log_var_shape):
    with pytest.raises(ValueError, match=r"\(4, 5\)"):
        losses.gaussian_log_likelihood(jnp.zeros(_A), jnp.zeros(_A), jnp.zeros(log_var_shape))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: losses.standard_normal_log_density(jnp.zeros(())), r"\[\.\.\., D\]"),
        (lambda: sparsity.kl_sparsity_penalty(jnp.zeros((2, 3, 4)), 0.1), r"\[B, J\]"),
        (lambda: sparsity.kl_sparsity_penalty(jnp.zeros((2, 3)), 0.0), r"\(0, 1\)"),
        (lambda: sparsity.kl_sparsity_penalty(jnp.zeros((2, 3)), 1.0), r"\(0, 1\)"),
        (lambda: sparsity.kl_sparsity_penalty(jnp.zeros((2, 3)), jnp.full(2, 0.1)), "scalar"),
    ],
    ids=["scalar_input", "codes_not_2d", "target_0", "target_1", "target_not_scalar"],
)
def test_invalid_inputs_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --------------------------------------------------------------------------------------
# Sparsity.
# --------------------------------------------------------------------------------------


def _np_bernoulli_kl(rho: float, rho_hat: np.ndarray) -> np.ndarray:
    return rho * np.log(rho / rho_hat) + (1 - rho) * np.log((1 - rho) / (1 - rho_hat))


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_kl_sparsity_worked_example_and_gradient_sign():
    """A unit with mean activation 0.3 and target 0.1 is pushed down; one at 0.05, up."""
    expected = 0.1 * math.log(0.1 / 0.3) + 0.9 * math.log(0.9 / 0.7)
    assert expected == pytest.approx(0.1163, abs=1e-4)
    logits = jnp.array([[_logit(0.3), _logit(0.05)]] * 4, jnp.float32)  # B = 4, J = 2
    value = sparsity.kl_sparsity_penalty(logits, 0.1)
    assert float(value) == pytest.approx(expected + _np_bernoulli_kl(0.1, 0.05), rel=1e-5)
    grad = np.asarray(jax.grad(sparsity.kl_sparsity_penalty)(logits, 0.1))
    # d/da_bj = (-rho / rho_hat + (1 - rho) / (1 - rho_hat)) * rho_hat (1 - rho_hat) / B
    for j, q in enumerate((0.3, 0.05)):
        np.testing.assert_allclose(grad[:, j], (-0.1 / q + 0.9 / (1 - q)) * q * (1 - q) / 4,
                                   rtol=1e-4)
    assert np.all(grad[:, 0] > 0) and np.all(grad[:, 1] < 0)


def test_kl_sparsity_penalty_equals_sum_of_unit_divergences(rng):
    logits = np.float32(rng.normal(scale=2.0, size=(32, 6)))
    rho_hat = expit(logits.astype(np.float64)).mean(axis=0)
    penalty = sparsity.kl_sparsity_penalty(f32(logits), 0.05)
    assert penalty.shape == ()  # a batch statistic, not per-example
    assert float(penalty) == pytest.approx(_np_bernoulli_kl(0.05, rho_hat).sum(), rel=1e-5)


@pytest.mark.parametrize("rho", [0.01, 0.1, 0.5, 0.9])
def test_kl_sparsity_zero_at_target(rho):
    logits = jnp.full((8, 3), _logit(rho), jnp.float32)
    np.testing.assert_allclose(sparsity.kl_sparsity_penalty(logits, rho), 0.0, atol=1e-5)
    assert np.max(np.abs(jax.grad(sparsity.kl_sparsity_penalty)(logits, rho))) < 1e-4


@pytest.mark.parametrize("a", [-20.0, -40.0, 20.0, 40.0])
def test_kl_sparsity_gradient_never_vanishes_for_saturated_units(a):
    """A unit saturated over the whole batch (pre-activation a; -20: activations ~2e-9) is
    pulled back towards the target: its gradient is the analytic one, not 0 (a clip of the
    mean activation would give exactly 0 here)."""
    logits = jnp.full((16, 1), a, jnp.float32)
    value, grad = jax.value_and_grad(sparsity.kl_sparsity_penalty)(logits, 0.1)
    # log rho_hat = log sigmoid(a), log(1 - rho_hat) = log sigmoid(-a), exactly, in float64
    expected = 0.1 * (math.log(0.1) - log_expit(a)) + 0.9 * (math.log(0.9) - log_expit(-a))
    assert float(value) == pytest.approx(expected, rel=1e-4)
    # d/da_b = (-rho / q + (1 - rho) / (1 - q)) * q (1 - q) / B = (q - rho) / B
    np.testing.assert_allclose(grad, (expit(a) - 0.1) / 16, rtol=1e-4)
    assert np.all(grad < 0) if a < 0 else np.all(grad > 0)
