"""M2 (Kingma et al. 2014, the semi-supervised VAE) against independent computations: every
network re-run as a float64 numpy forward pass from the parameters, each bound recomputed from
it, the exact sum over classes by brute force over labelled bounds, the gradient into q(y|x)
by finite differences, the parameter count by hand.

Everything under test runs jitted (one compile per function and shape, not one per primitive)
and the parameters are drawn in numpy on `init_params`' structure, so the file stays fast.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import expit, log_softmax, logsumexp
from scipy.stats import norm

from aevb.models import m2

D, C, L, H, B = 6, 3, 2, 5, 7

_labeled = jax.jit(m2.labeled_terms, static_argnums=0)
_unlabeled = jax.jit(m2.unlabeled_terms, static_argnums=0)
_loss = jax.jit(m2.m2_loss, static_argnums=0, static_argnames=("alpha", "labeled_fraction"))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _apply(model: m2.M2, method: str, params, *args):
    """model.apply(params, *args, method=method), jitted."""
    return model.apply(params, *args, method=method)


@functools.cache
def _model(likelihood: str = "bernoulli") -> tuple[m2.M2, dict]:
    """A tiny M2 with parameters drawn in numpy (float32) on init_params' structure, large
    enough that q(y|x) is far from uniform and the classes differ in q(z|x, y)."""
    model = m2.dense_m2(num_classes=C, hidden_sizes=(H,), latent_dim=L, output_dim=D,
                        likelihood=likelihood)
    shapes = jax.eval_shape(lambda: m2.init_params(model, jax.random.key(0)))
    rng = np.random.default_rng(0)

    def draw(path, leaf):
        scale = 0.3 if path[-1].key == "bias" else 1.5 / math.sqrt(leaf.shape[0])
        if path[-3].key == "classifier" and path[-2].key == "logits":
            scale *= 4.0                                 # q(y|x) far from uniform
        if path[-3].key == "decoder" and path[-2].key == "mean_log_var":
            scale *= 0.3                                 # log-variances near 0: recon ~ 10
        return jnp.asarray(scale * rng.normal(size=leaf.shape), jnp.float32)

    return model, jax.tree_util.tree_map_with_path(draw, shapes)


def _x(likelihood: str, n: int = B, seed: int = 1) -> jax.Array:
    """Binary pixels (bernoulli) or unbounded reals, like M1 codes (gaussian)."""
    rng = np.random.default_rng(seed)
    if likelihood == "bernoulli":
        return jnp.asarray(rng.uniform(size=(n, D)) < 0.4, jnp.float32)
    return jnp.asarray(rng.normal(size=(n, D)), jnp.float32)


def _np(a) -> np.ndarray:
    return np.asarray(a, np.float64)


# ----------------------------------------------------------------------------- numpy M2

def _softplus(a: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, a)


def _dense(p: dict, h: np.ndarray) -> np.ndarray:
    return h @ _np(p["kernel"]) + (_np(p["bias"]) if "bias" in p else 0.0)


def _np_classify(params, x) -> np.ndarray:
    """q(y|x)'s logits [..., C]: softplus hidden layer, then the output layer."""
    p = params["params"]["classifier"]
    return _dense(p["logits"], _softplus(_dense(p["mlp"]["hidden_0"], _np(x))))


def _np_encode(params, x, one_hot) -> tuple[np.ndarray, np.ndarray]:
    """q(z|x, y) as (mean, log_var): one softplus layer on concat(x, y), then 2L outputs."""
    p = params["params"]["encoder"]
    kernel = np.concatenate([_np(p["x"]["kernel"]), _np(p["y"]["kernel"])], axis=0)
    one_hot = _np(one_hot)
    xy = np.concatenate([np.broadcast_to(_np(x), (*one_hot.shape[:-1], D)), one_hot], -1)
    out = _dense(p["mean_log_var"], _softplus(xy @ kernel + _np(p["x"]["bias"])))
    return out[..., :L], out[..., L:]


def _np_decode(params, likelihood: str, z, one_hot) -> tuple[np.ndarray, ...]:
    """p(x|y, z): (logits,) or (unconstrained mean, log_var floored at -10 by a softplus)."""
    p = params["params"]["decoder"]
    h = _softplus(_dense(p["mlp"]["hidden_0"], np.concatenate([_np(z), _np(one_hot)], -1)))
    if likelihood == "bernoulli":
        return (_dense(p["logits"], h),)
    out = _dense(p["mean_log_var"], h)
    return out[..., :D], -10.0 + _softplus(out[..., D:] + 10.0)


def _np_log_lik(likelihood: str, out: tuple[np.ndarray, ...], x) -> np.ndarray:
    x = _np(x)
    if likelihood == "bernoulli":
        return np.sum(x * out[0] - np.logaddexp(0.0, out[0]), axis=-1)
    return np.sum(norm.logpdf(x, out[0], np.exp(0.5 * out[1])), axis=-1)


def _np_labeled(model, params, x, y: np.ndarray, key) -> dict[str, np.ndarray]:
    """-L(x, y) and its parts, and -log q(y|x), in float64 numpy; z's noise drawn from `key`
    as a reparameterised sample draws it."""
    one_hot = np.eye(C)[y]
    mu, log_var = _np_encode(params, x, one_hot)
    z = mu + np.exp(0.5 * log_var) * _np(jax.random.normal(key, mu.shape))
    log_lik = _np_log_lik(model.likelihood, _np_decode(params, model.likelihood, z, one_hot), x)
    kl = 0.5 * np.sum(np.exp(log_var) + mu**2 - 1.0 - log_var, axis=-1)
    log_q = log_softmax(_np_classify(params, x), axis=-1)
    return {"recon": -log_lik, "kl": kl, "neg_elbo": -log_lik + kl + math.log(C),
            "cross_entropy": -log_q[np.arange(len(y)), y],
            "accuracy": (np.argmax(log_q, -1) == y).astype(float)}


# ----------------------------------------------------------------------------- the bounds

@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_labeled_terms_match_numpy(likelihood):
    model, params = _model(likelihood)
    x, y = _x(likelihood), np.array([0, 1, 2, 0, 1, 2, 2])
    key = jax.random.key(5)
    terms = _labeled(model, params, x, jnp.asarray(y), key)
    expected = _np_labeled(model, params, x, y, key)
    assert set(terms) == set(expected)
    for name, value in expected.items():
        assert terms[name].shape == (B,)
        np.testing.assert_allclose(_np(terms[name]), value, rtol=1e-5, atol=1e-4, err_msg=name)
    assert 0 < expected["accuracy"].mean() < 1
    # The prior term is there: neg_elbo - recon - kl = log C, not 0.
    np.testing.assert_allclose(_np(terms["neg_elbo"] - terms["recon"] - terms["kl"]),
                               math.log(C), atol=1e-3)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_unlabeled_bound_is_q_weighted_sum_of_labeled_bounds(likelihood):
    """-U(x) = sum_c q(c|x) (-L(x, c)) - H(q), with -L(x, c) from labeled_terms(y = c) and
    class c's key split(key, C)[c], combined in numpy."""
    model, params = _model(likelihood)
    x, key = _x(likelihood), jax.random.key(9)
    terms = _unlabeled(model, params, x, key)
    keys = jax.random.split(key, C)
    per_class = np.stack([_np(_labeled(model, params, x, jnp.full((B,), c, jnp.int32),
                                       keys[c])["neg_elbo"]) for c in range(C)])   # [C, B]
    log_q = log_softmax(_np_classify(params, x), axis=-1).T                       # [C, B]
    q = np.exp(log_q)
    entropy = -np.sum(q * log_q, axis=0)
    expected = np.sum(q * per_class, axis=0) - entropy
    for name in terms:
        assert terms[name].shape == (B,), name
    np.testing.assert_allclose(_np(terms["entropy"]), entropy, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_np(terms["neg_bound"]), expected, rtol=1e-5, atol=1e-4)
    # -U(x) >= -log sum_c exp(L(x, c)) (the best q) >= min_c -L(x, c) - log C.
    neg_bound = _np(terms["neg_bound"])
    assert np.all(neg_bound >= -logsumexp(-per_class, axis=0) - 1e-4)
    assert np.all(neg_bound >= per_class.min(axis=0) - math.log(C) - 1e-4)
    # The weighting is by q(y|x), which is not uniform here: the plain average differs.
    assert np.max(np.abs(q - 1.0 / C)) > 0.2
    assert np.max(np.abs(neg_bound - (per_class.mean(axis=0) - entropy))) > 1e-1


def test_m2_loss_combines_the_terms_and_the_cross_entropy():
    model, params = _model()
    xu, xl = _x("bernoulli", seed=2), _x("bernoulli", seed=3)
    yl = np.array([2, 0, 1, 1, 0, 2, 1])
    key = jax.random.key(11)
    loss, metrics = _loss(model, params, xu, xl, jnp.asarray(yl), key, alpha=0.1,
                          labeled_fraction=0.3)
    labeled_key, unlabeled_key = jax.random.split(key)
    lab = _np_labeled(model, params, xl, yl, labeled_key)
    neg_bound = _np(_unlabeled(model, params, xu, unlabeled_key)["neg_bound"])
    log_q = log_softmax(_np_classify(params, xl), axis=-1)
    cross_entropy = -np.mean(log_q[np.arange(B), yl])
    expected = 0.3 * lab["neg_elbo"].mean() + 0.7 * neg_bound.mean() + 0.1 * cross_entropy
    assert loss.shape == ()
    assert set(metrics) == {"loss", "labeled_neg_elbo", "unlabeled_neg_bound",
                            "cross_entropy", "labeled_accuracy", "entropy"}
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["loss"]), expected, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["cross_entropy"]), cross_entropy, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["labeled_neg_elbo"]), lab["neg_elbo"].mean(),
                               rtol=1e-5)
    np.testing.assert_allclose(float(metrics["unlabeled_neg_bound"]), neg_bound.mean(),
                               rtol=1e-5)
    np.testing.assert_allclose(float(metrics["labeled_accuracy"]),
                               np.mean(np.argmax(log_q, -1) == yl))
    q = np.exp(log_softmax(_np_classify(params, xu), -1))
    np.testing.assert_allclose(float(metrics["entropy"]),
                               np.mean(-np.sum(q * np.log(q), -1)), rtol=1e-5)


# ----------------------------------------------------------------------------- gradients

def _norm(tree) -> float:
    return float(np.sqrt(sum(np.sum(_np(a) ** 2) for a in jax.tree.leaves(tree))))


def test_unlabeled_gradient_reaches_the_classifier_and_matches_finite_differences():
    """d mean(-U(x)) / d(q(y|x)'s parameters) along a random direction, against a central
    difference, in float64."""
    model, params32 = _model()
    with jax.enable_x64(True):
        params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params32)
        x = _x("bernoulli").astype(jnp.float64)
        key = jax.random.key(4)

        @jax.jit
        @jax.value_and_grad
        def f(classifier):
            p = {"params": {**params["params"], "classifier": classifier}}
            return jnp.mean(m2.unlabeled_terms(model, p, x, key)["neg_bound"])

        theta = params["params"]["classifier"]
        grad = f(theta)[1]
        rng = np.random.default_rng(8)
        direction = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape)), theta)
        h = 1e-5
        plus, minus = (float(f(jax.tree.map(lambda t, v, s=s: t + s * h * v, theta,
                                            direction))[0]) for s in (1.0, -1.0))
        numeric = (plus - minus) / (2 * h)
        analytic = sum(float(np.vdot(_np(g), _np(v)))
                       for g, v in zip(jax.tree.leaves(grad), jax.tree.leaves(direction),
                                       strict=True))
    assert _norm(grad) > 1e-3
    assert abs(numeric) > 1e-3
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5)


def test_without_alpha_the_classifier_learns_from_the_unlabeled_term_only():
    """alpha = 0: the classifier's gradient is non-zero with unlabelled data alone
    (labeled_fraction = 0) and exactly zero with labelled data alone (labeled_fraction = 1:
    q(y|x) does not appear in L(x, y))."""
    model, params = _model()
    xu, xl = _x("bernoulli", seed=2), _x("bernoulli", seed=3)
    yl = jnp.array([0, 1, 2, 1, 0, 0, 2])

    @jax.jit
    def classifier_grad(fraction: jax.Array):
        def loss(classifier):
            p = {"params": {**params["params"], "classifier": classifier}}
            return m2.m2_loss(model, p, xu, xl, yl, jax.random.key(1), alpha=0.0,
                              labeled_fraction=fraction)[0]
        return jax.grad(loss)(params["params"]["classifier"])

    assert _norm(classifier_grad(jnp.float32(0.0))) > 1e-3
    assert _norm(classifier_grad(jnp.float32(1.0))) == 0.0


# ----------------------------------------------------------------------------- the networks

def test_encode_all_classes_at_once_equals_separate_calls_and_numpy():
    model, params = _model()
    x = _x("bernoulli")
    ys = jnp.broadcast_to(jnp.eye(C)[:, None, :], (C, B, C))
    together = _apply(model, "encode", params, x, ys)
    assert together.loc.shape == together.log_var.shape == (C, B, L)
    for c in range(C):
        alone = _apply(model, "encode", params, x, ys[c])
        np.testing.assert_allclose(together.loc[c], alone.loc, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(together.log_var[c], alone.log_var, rtol=1e-6, atol=1e-6)
        mu, log_var = _np_encode(params, x, np.eye(C)[[c] * B])
        np.testing.assert_allclose(_np(together.loc[c]), mu, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(_np(together.log_var[c]), log_var, rtol=1e-5, atol=1e-5)


def _dot_lhs_shapes(jaxpr) -> list[tuple[int, ...]]:
    """The left operand's shape of every matmul in a jaxpr, nested jaxprs included."""
    shapes = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            shapes.append(tuple(eqn.invars[0].aval.shape))
        for param in eqn.params.values():
            for sub in param if isinstance(param, (list, tuple)) else [param]:
                if isinstance(sub, jax.extend.core.ClosedJaxpr):
                    shapes += _dot_lhs_shapes(sub.jaxpr)
                elif isinstance(sub, jax.extend.core.Jaxpr):
                    shapes += _dot_lhs_shapes(sub)
    return shapes


def test_unlabeled_terms_multiply_x_by_a_first_layer_once_per_network():
    """x [B, D] enters two matmuls (q(y|x)'s and q(z|x, y)'s first layers), not C + 1: the
    x part of q(z|x, y) is shared by all classes; the per-class work is on [C, B, ...]."""
    model, params = _model()
    jaxpr = jax.make_jaxpr(functools.partial(m2.unlabeled_terms, model))(
        params, _x("bernoulli"), jax.random.key(0))
    shapes = _dot_lhs_shapes(jaxpr.jaxpr)
    assert shapes.count((B, D)) == 2
    assert (C, B, C) in shapes and not any(s[-1] == D + C for s in shapes)


def test_gaussian_decoder_mean_is_unconstrained_and_log_var_floored():
    """p(x|y, z) for M1 codes: mean = the raw dense output (no sigmoid), log-variance
    -10 + softplus(raw + 10), from concat(z, y)."""
    model, params = _model("gaussian")
    z = 3.0 * np.random.default_rng(2).normal(size=(B, L))
    y = np.eye(C)[np.arange(B) % C]
    lik = _apply(model, "decode", params, jnp.asarray(z, jnp.float32), jnp.asarray(y))
    mean, log_var = _np_decode(params, "gaussian", z, y)
    np.testing.assert_allclose(_np(lik.loc), mean, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_np(lik.log_var), log_var, rtol=1e-5, atol=1e-5)
    assert np.any((mean < 0) | (mean > 1))


def test_class_conditional_samples_a_row_per_class_a_style_per_column():
    model, params = _model()
    S = 4
    z = np.random.default_rng(3).normal(size=(S, L))
    grid = jax.jit(m2.class_conditional_samples, static_argnums=0)(
        model, params, jnp.asarray(z, jnp.float32))
    assert grid.shape == (C * S, D)
    for c in range(C):
        for s in range(S):
            (logits,) = _np_decode(params, "bernoulli", z[s], np.eye(C)[c])
            np.testing.assert_allclose(grid[c * S + s], expit(logits), rtol=1e-5, atol=1e-6)


def test_analogies_first_row_is_x_then_its_style_in_every_class():
    model, params = _model()
    S = 4
    x = _x("bernoulli", S)
    grid = jax.jit(m2.analogies, static_argnums=0)(model, params, x)
    assert grid.shape == ((C + 1) * S, D)
    np.testing.assert_array_equal(grid[:S], x)
    y_hat = np.argmax(_np_classify(params, x), axis=-1)
    style, _ = _np_encode(params, x, np.eye(C)[y_hat])                    # [S, L]
    for c in range(C):
        (logits,) = _np_decode(params, "bernoulli", style, np.eye(C)[[c] * S])
        np.testing.assert_allclose(grid[(c + 1) * S:(c + 2) * S], expit(logits),
                                   rtol=1e-5, atol=1e-6)
    probs = jax.jit(m2.class_probabilities, static_argnums=0)(model, params, x)
    np.testing.assert_allclose(probs, np.exp(log_softmax(_np_classify(params, x), -1)),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_parameter_count_of_the_paper_architecture(likelihood):
    model = m2.dense_m2(num_classes=10, hidden_sizes=(500,), latent_dim=50, output_dim=784,
                        likelihood=likelihood)
    shapes = jax.eval_shape(lambda: m2.init_params(model, jax.random.key(0)))
    count = sum(math.prod(a.shape) for a in jax.tree.leaves(shapes))
    classifier = (784 * 500 + 500) + (500 * 10 + 10)
    encoder = (784 * 500 + 500) + 10 * 500 + (500 * 2 * 50 + 2 * 50)   # x, y (no bias), out
    outputs = 784 if likelihood == "bernoulli" else 2 * 784             # + log-variances
    decoder = ((50 + 10) * 500 + 500) + (500 * outputs + outputs)
    assert count == classifier + encoder + decoder


def test_unknown_likelihood_is_refused():
    with pytest.raises(ValueError, match="likelihood"):
        jax.eval_shape(lambda: m2.init_params(m2.dense_m2(C, (H,), L, D, likelihood="poisson"),
                                              jax.random.key(0)))
