"""Convolutional models: the operations against XLA's own, the feature maps' shapes against
Flax's layers, the mirror, the FLOP counts against XLA's cost analysis, the objectives, and
every composition end to end on the tiny IDX data."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import model_and_state, small_vae_config
from jax import lax

from aevb import models
from aevb.data import noise
from aevb.families import vae as vae_family
from aevb.models import conv as conv_models
from aevb.models import conv_ops
from aevb.models.conv import ConvStack
from aevb.regimes import joint as train
from aevb.regimes import pretrain

DIMS = ("NHWC", "HWIO", "NHWC")


def _random(shape, seed):
    return jax.random.normal(jax.random.key(seed), shape)


def _grads(f, x, w, cotangent):
    return jax.grad(lambda x, w: jnp.sum(f(x, w) * cotangent), (0, 1))(x, w)


def _conv_autoencoder(stack: ConvStack, code_dim: int, dense_code: bool = True):
    """The autoencoder family's conv model on `stack`: the conv trunk with a dense code of
    `code_dim` (or the last feature map as the code), its mirror, relu, linear code."""
    dense = (code_dim,) if dense_code else ()
    depth = len(stack.channels) + len(dense)
    encoder = conv_models.ConvEncoder(stack, dense, ("relu",) * (depth - 1) + ("linear",),
                                      preactivation=True)
    return models.TrunkAutoencoder(encoder, conv_models.ConvDecoder(stack, (), dense_code,
                                                                    "relu"))


# ----------------------------------------------------------------------------- operations

@pytest.mark.parametrize("side, kernel, stride, padding", [
    (9, 3, 1, "same"), (9, 3, 2, "same"), (10, 3, 2, "valid"), (13, 5, 3, "valid"),
    (8, 4, 2, "same")])
def test_conv2d_and_its_gradients_equal_xlas(side, kernel, stride, padding):
    x, w = _random((2, side, side + 1, 3), 0), _random((kernel, kernel, 3, 4), 1)

    def xla(x, w):
        return lax.conv_general_dilated(x, w, (stride, stride), padding.upper(),
                                        dimension_numbers=DIMS)

    def ours(x, w):
        return conv_ops.conv2d(x, w, stride, padding)

    np.testing.assert_allclose(ours(x, w), xla(x, w), rtol=1e-5, atol=1e-5)
    cotangent = _random(xla(x, w).shape, 2)
    for a, b in zip(_grads(ours, x, w, cotangent), _grads(xla, x, w, cotangent)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("side, kernel, stride, padding", [
    (3, 3, 2, [(2, 2), (2, 2)]), (7, 3, 2, [(1, 2), (1, 2)]), (5, 5, 3, [(0, 4), (3, 1)]),
    (4, 2, 2, [(1, 1), (1, 1)]), (6, 3, 1, [(1, 1), (1, 1)])])
def test_conv_transpose2d_and_its_gradients_equal_flaxs(side, kernel, stride, padding):
    x, w = _random((2, side, side, 3), 0), _random((kernel, kernel, 3, 4), 1)
    layer = nn.ConvTranspose(4, (kernel, kernel), strides=(stride, stride), padding=padding)

    def flax_(x, w):
        return layer.apply({"params": {"kernel": w, "bias": jnp.zeros(4)}}, x)

    def ours(x, w):
        return conv_ops.conv_transpose2d(x, w, stride, padding)
    np.testing.assert_allclose(ours(x, w), flax_(x, w), rtol=1e-5, atol=1e-5)
    cotangent = _random(flax_(x, w).shape, 2)
    for a, b in zip(_grads(ours, x, w, cotangent), _grads(flax_, x, w, cotangent)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_max_pool_equals_flaxs():
    x = _random((2, 7, 9, 3), 0)
    for p in (2, 3):
        np.testing.assert_array_equal(conv_ops.max_pool(x, p),
                                      nn.max_pool(x, (p, p), strides=(p, p)))


# ----------------------------------------------------------------------------- shapes

STACKS = {   # (image shape, channels, kernels, strides, pools, paddings)
    "geron": ((28, 28, 1), (16, 32, 64), (3, 3, 3), (1, 1, 1), (2, 2, 2), ("same",) * 3),
    "strided": ((28, 28, 1), (8, 16), (3, 3), (2, 2), (1, 1), ("same", "same")),
    "valid": ((28, 28, 1), (4, 8), (5, 3), (1, 2), (2, 1), ("valid", "valid")),
    "colour": ((32, 32, 3), (4, 6, 8), (3, 3, 3), (2, 1, 1), (1, 2, 1),
               ("same", "valid", "same")),
    "oblong": ((20, 12, 2), (4,), (3,), (1,), (2,), ("same",)),
}


@pytest.mark.parametrize("name", sorted(STACKS))
def test_feature_map_sides_are_flaxs(name):
    """The sides the validation and the decoder compute equal Flax's Conv + max_pool."""
    stack = ConvStack(*STACKS[name])
    h = jnp.zeros((1, *stack.image_shape))
    sides = [h.shape[1:3]]
    for i, c in enumerate(stack.channels):
        k, s, p = stack.kernels[i], stack.strides[i], stack.pools[i]
        conv = nn.Conv(c, (k, k), strides=(s, s), padding=stack.paddings[i].upper())
        h = conv.apply(conv.init(jax.random.key(0), h), h)
        h = nn.max_pool(h, (p, p), strides=(p, p))
        sides.append(h.shape[1:3])
    assert stack.sides() == [tuple(s) for s in sides]


@pytest.mark.parametrize("name", sorted(STACKS))
def test_decoder_mirrors_the_encoder_exactly(name):
    """Each transposed convolution gives back the side its encoder layer received (XLA's
    shape of `lax.conv_transpose`), the kernels mirror, and the output is the image."""
    stack = ConvStack(*STACKS[name])
    sides, n = stack.sides(), len(stack.channels)
    for i in range(n):
        out = jax.eval_shape(lambda x, i=i: conv_ops.conv_transpose2d(
            x, jnp.zeros((stack.kernels[i],) * 2 + (1, 1)), stack.strides[i] * stack.pools[i],
            stack.transpose_padding(i)), jnp.zeros((1, *sides[i + 1], 1)))
        assert out.shape[1:3] == sides[i]
    model = _conv_autoencoder(stack, 5)
    x = jnp.zeros((3, int(np.prod(stack.image_shape))))
    params = model.init(jax.random.key(0), x)["params"]
    channels = (stack.image_shape[2], *stack.channels)
    for i in range(n):
        k = stack.kernels[i]
        assert params["encoder"][f"conv_{i}"]["kernel"].shape == (k, k, channels[i],
                                                                   channels[i + 1])
        assert params["decoder"][f"deconv_{n - 1 - i}"]["kernel"].shape == (
            k, k, channels[i + 1], channels[i])
    out = model.apply({"params": params}, x)
    assert out.x_hat.shape == x.shape and out.code.shape == (3, 5)


def test_gerons_autoencoder_is_28_14_7_3_and_back():
    """Known values: the chapter's sides, Keras' `valid` padding for 3 -> 7, and the
    46,529 parameters Keras reports for the same layers."""
    stack = ConvStack(*STACKS["geron"])
    assert stack.sides() == [(28, 28), (14, 14), (7, 7), (3, 3)]
    assert stack.transpose_padding(2) == [(2, 2), (2, 2)]
    model = _conv_autoencoder(stack, 576, dense_code=False)
    params = model.init(jax.random.key(0), jnp.zeros((1, 784)))
    assert sum(p.size for p in jax.tree.leaves(params)) == 46_529


@pytest.mark.parametrize("name", sorted(STACKS))
def test_flops_are_xlas_cost_analysis(name):
    stack = ConvStack(*STACKS[name])
    enc, dec = stack.forward_flops()
    sides, channels, n = stack.sides(), (stack.image_shape[2], *stack.channels), len(enc)
    for i in range(n):
        k, cin, cout = stack.kernels[i], channels[i], channels[i + 1]

        def conv(x, i=i, k=k, cin=cin, cout=cout):
            return lax.conv_general_dilated(
                x, jnp.ones((k, k, cin, cout)), (stack.strides[i],) * 2, stack.conv_padding(i),
                dimension_numbers=DIMS)

        def tconv(x, i=i, k=k, cin=cin, cout=cout):
            return lax.conv_transpose(
                x, jnp.ones((k, k, cout, cin)), (stack.strides[i] * stack.pools[i],) * 2,
                stack.transpose_padding(i), dimension_numbers=DIMS)

        def cost(f, shape):
            return jax.jit(f).lower(jnp.ones(shape)).compile().cost_analysis()
        assert enc[i] == cost(conv, (1, *sides[i], cin))["flops"]
        assert dec[n - 1 - i] == cost(tconv, (1, *sides[i + 1], cout))["flops"]


# ----------------------------------------------------------------------------- objectives

def conv_autoencoder_config(data_dir: str = "", variant: str = "code30"):
    """experiments/conv.py with 4 and 8 filters (28 -> 14 -> 7), shrunk to seconds."""
    from experiments import conv

    config = conv.get_config(variant)
    config.data.dir = data_dir
    config.data.num_validation = 0
    config.model.conv.channels, config.model.conv.kernels = (4, 8), (3, 3)
    config.model.conv.strides, config.model.conv.pools = (1, 1), (2, 2)
    config.model.conv.paddings = ("same", "same")
    config.model.latent_dim = 6 if variant == "code30" else 7 * 7 * 8
    config.train.num_epochs, config.train.batch_size = 4, 40
    config.train.learning_rate = 3e-3
    config.eval.batch_size, config.eval.num_images = 100, 4
    return config


def conv_vae_config(data_dir: str):
    """experiments/vae.py:conv with 4 and 8 filters, on the tiny data."""
    config = small_vae_config(data_dir)
    config.model.architecture, config.model.activation = "conv", "relu"
    config.model.hidden_sizes = ()
    config.model.conv.channels, config.model.conv.kernels = (4, 8), (3, 3)
    config.model.conv.strides, config.model.conv.pools = (2, 2), (1, 1)
    config.model.conv.paddings = ("same", "same")
    return config


@pytest.mark.parametrize("kind", ["gaussian", "masking"])
def test_conv_denoising_scores_the_clean_input(kind):
    config = conv_autoencoder_config()
    config.noise.kind = kind
    family, model, _, state = model_and_state(config)
    x = jax.random.uniform(jax.random.key(3), (16, 784))
    key = jax.random.key(4)
    terms = family.objective(config, model, train=True)(state.params, x, key)
    corrupted = noise.corrupt(x, kind, key, config.noise.std, config.noise.rate)
    x_hat = model.apply(state.params, corrupted).x_hat
    np.testing.assert_allclose(terms["recon"], jnp.mean((x_hat - x) ** 2, -1), rtol=1e-6)
    assert not np.allclose(terms["recon"], jnp.mean((x_hat - corrupted) ** 2, -1))


def test_conv_vae_lk_is_at_least_the_elbo_and_does_not_decrease_with_k():
    config = conv_vae_config("")
    _, model, _, state = model_and_state(config, (8, 8, 1))
    x = jnp.tile(jax.random.bernoulli(jax.random.key(1), 0.4, (10, 64)).astype(jnp.float32),
                 (40, 1))
    jitted = jax.jit(lambda key, k, objective: vae_family.vae_terms(
        model, state.params, x, key, num_samples=k, objective=objective),
        static_argnums=(1, 2))

    def terms(k, objective):
        return jitted(jax.random.key(k), k, objective)
    elbo = -float(np.mean(terms(1, "elbo")["loss"]))
    bound = {k: -float(np.mean(terms(k, "iwae")["loss"])) for k in (1, 5, 50)}
    assert abs(bound[1] - elbo) < 0.05 * abs(elbo), (bound, elbo)   # equal in expectation
    assert elbo < bound[5] < bound[50], (bound, elbo)


# ----------------------------------------------------------------------------- end to end

@pytest.mark.parametrize("case", ["feature_map", "stacked+masking+l1", "gaussian+kl"])
def test_every_conv_autoencoder_composition_runs(tiny_idx_dir, tmp_path, case):
    """Undercomplete (the feature map as the code), stacked (dense layers between the convs
    and the code), denoising under each noise, sparse codes under each penalty."""
    config = conv_autoencoder_config(tiny_idx_dir, "" if case == "feature_map" else "code30")
    parts = case.split("+")
    if "stacked" in parts:
        config.model.hidden_sizes = (16,)
    for kind in ("gaussian", "masking"):
        if kind in parts:
            config.noise.kind = kind
    for kind in ("kl", "l1"):
        if kind in parts:
            config.model.code_activation, config.sparsity.kind = "sigmoid", kind
    summary = train.train_and_evaluate(config, str(tmp_path / "run"))
    assert 0 < summary["test_mse"] < 0.2 and summary["pca_mse"] > 0
    if "masking" in parts:  # half the pixels dropped: already restored after 100 steps
        assert summary["test_denoising_mse"] < summary["test_corrupted_mse"]
    if "kl" in parts:  # towards the target 0.1: 0.19 here; without the penalty, 0.99999
        assert summary["code_mean_activation"] < 0.5
    assert (tmp_path / "run" / "filters.png").exists()


@pytest.mark.parametrize("kind", ["autoencoder", "vae"])
def test_a_conv_encoder_is_exported_to_the_classifier(kind):
    """The classifier of pretraining starts from the conv encoder's kernels (the regime
    hands it the trained parameters: tests/test_pretrain.py)."""
    config = conv_autoencoder_config() if kind == "autoencoder" else conv_vae_config("")
    family, _, _, state = model_and_state(config)
    layers = 1 if kind == "autoencoder" else 0  # the autoencoder: its lower conv layer only
    _, pretrained, scratch = pretrain.classifier.build(
        family, config.model, (28, 28, 1), 10, state.params, layers, jax.random.key(5))
    encoder = pretrained["params"]["encoder"]
    ae_encoder = state.params["params"]["encoder"]
    first = ae_encoder["conv_0"] if kind == "autoencoder" else ae_encoder["body"]["conv_0"]
    exported = encoder["conv_0"] if kind == "autoencoder" else encoder["body"]["conv_0"]
    np.testing.assert_array_equal(exported["kernel"], first["kernel"])
    fresh = scratch["params"]["encoder"]
    fresh = fresh["conv_0"] if kind == "autoencoder" else fresh["body"]["conv_0"]
    assert not np.allclose(fresh["kernel"], first["kernel"])  # scratch: its own kernels
    if kind == "autoencoder":   # one layer exported: no second conv layer under the head
        assert set(encoder) == {"conv_0"}
