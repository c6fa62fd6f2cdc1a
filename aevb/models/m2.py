"""M2, the semi-supervised VAE of Kingma, Rezende, Mohamed & Welling (2014), "Semi-supervised
learning with deep generative models" (NeurIPS 2014, arXiv:1406.5298): the model and the pure
objective functions that a training regime calls.

Citations are to arXiv v2's numbering (equations by number, which is the robust reference).

The model (M2: Section 2.2, and the objective of Section 3.1.2 (M2), as the paper states
them): a class y and a continuous "style" z generate x,

  p(y) = Cat(1/C) (log p(y) = -log C),  p(z) = N(0, I),  p(x|y, z) = f(x; y, z, theta),

with a Bernoulli p(x|y, z) over pixels in [0, 1], or, for M1+M2, a Gaussian over the
50-dimensional latent codes of an M1 VAE (M1+M2, Section 2.3). Inference has two
networks: the Gaussian q(z|x, y) and the categorical q(y|x), which is the classifier.

The bounds (Section 3.1.2, eqs. 6 and 7), per example, in nats; the functions here return
their negatives (what is minimised):

  labelled    -L(x, y) = -E_q(z|x,y)[log p(x|y, z)] + KL(q(z|x, y) || p(z)) - log p(y)
              (one reparameterised z, the KL in closed form: `labeled_terms`);
  unlabelled  -U(x) = sum_y q(y|x) (-L(x, y)) - H(q(y|x)), the sum over the C classes done
              exactly (every example encoded and decoded once per class, as one [C, B]
              batch: `unlabeled_terms`).

The objective (eq. 9, closing Section 3.1.2): J^alpha = sum_labelled L(x, y)
+ sum_unlabelled U(x) + alpha E_labelled[-log q(y|x)], the last term so that the classifier
also learns from the labels (q(y|x) does not appear in L(x, y)), with alpha = 0.1 N, the
value the paper states it used in all its experiments (Section 4 protocol). `m2_loss`
estimates J^alpha / N from one labelled and one unlabelled batch, so its `alpha` is the
paper's alpha / N = 0.1 and its `labeled_fraction` is N_l / N.

Architecture and optimisation (the Section 4 experimental protocol, as the paper states
it): for M2 every network (q(y|x), q(z|x, y), p(x|y, z)) is an MLP with one hidden layer of
500 softplus units, and 50 latent units; the M1 VAE of M1+M2 has two hidden layers of 600
softplus units and 50 latents, and M2 is trained on its latent codes. The optimiser is
RMSProp with momentum and a bias correction, with decays 0.1 and 0.001 for the first and
second moments, i.e. Adam with learning rate 3e-4, beta1 = 0.9 and beta2 = 0.999. The paper
initialises the weights from N(0, 0.001^2); this module does not: it takes the kernel
initialisers of `models.KERNEL_INITS` (Flax's lecun_normal by default).

The networks are heads on an architecture's trunks (`m2.architecture`; `dense_m2` builds the
paper's dense M2): q(y|x) an encoder trunk of the hidden widths under a dense layer of C
logits; q(z|x, y) the architecture's own layers (none for mlp, the conv layers for conv)
applied to x, then the dense layers below; p(x|y, z) a decoder trunk of the hidden widths.

Efficiency: q(z|x, y)'s first dense layer is Dense(x) + Dense_no_bias(y). The x part
[B, H] is computed once and broadcast against the y part [..., B, H], so encoding all C
classes does not redo the [B, D] x [D, H] matmul (nor any conv layer) C times. The
decoder's input is concat(z, y).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from aevb import models
from aevb.models import losses
from aevb.models.distributions import Bernoulli, Gaussian

Params = Any

LIKELIHOODS = ("bernoulli", "gaussian")
# The Gaussian p(x|y, z)'s log-variance floor (M1 codes): min + softplus(raw - min), as
# `models.pixel_distribution` keeps its own floor, so the density stays bounded.
GAUSSIAN_MIN_LOG_VAR = -10.0


class ClassifierHead(models.TrunkHead):
    """q(y|x): x [..., D] -> logits [..., C], an encoder trunk then Dense(C) (`logits`)."""

    trunk: nn.Module
    num_classes: int
    kernel_init: str = "lecun_normal"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.Dense(self.num_classes, kernel_init=models.KERNEL_INITS[self.kernel_init],
                        name="logits")(self.trunk(x))


class StyleEncoder(nn.Module):
    """q(z|x, y): x [B, D], y [..., B, C] -> Gaussian [..., B, L].

    x goes through `trunk` (the architecture's own layers: the identity for mlp; parameters
    under `trunk`), then the first dense layer is `x` (Dense of the trunk's output, computed
    once) + `y` (Dense of y without bias), broadcast over y's leading axes; then the
    activation, the dense layers of `hidden_sizes[1:]` (`mlp`) and `mean_log_var`. With no
    hidden layers that sum is the output layer.
    """

    trunk: nn.Module
    hidden_sizes: Sequence[int]
    latent_dim: int
    activation: str
    kernel_init: str = "lecun_normal"

    @nn.compact
    def __call__(self, x: jax.Array, y: jax.Array) -> Gaussian:
        init = models.KERNEL_INITS[self.kernel_init]
        sizes = tuple(self.hidden_sizes)
        width = sizes[0] if sizes else 2 * self.latent_dim
        pre = models.broadcast_add(nn.Dense(width, kernel_init=init, name="x")(self.trunk(x)),
                                   nn.Dense(width, use_bias=False, kernel_init=init,
                                            name="y")(y))
        if sizes:
            h = models.get_activation(self.activation)(pre)
            h = models.MLP(sizes[1:], self.activation, self.kernel_init, name="mlp")(h)
            pre = nn.Dense(2 * self.latent_dim, kernel_init=init, name="mean_log_var")(h)
        mean, log_var = jnp.split(pre, 2, axis=-1)
        return Gaussian(mean, log_var)


class DecoderHead(models.TrunkHead):
    """p(x|y, z): concat(z, y) [..., L + C] -> a decoder trunk -> Bernoulli [..., D] (its
    logits), or Gaussian [..., D] (M1 codes: an unconstrained mean and a log-variance
    floored softly at `GAUSSIAN_MIN_LOG_VAR`)."""

    trunk: nn.Module
    likelihood: str = "bernoulli"

    @nn.compact
    def __call__(self, zy: jax.Array) -> Bernoulli | Gaussian:
        out = self.trunk(zy)
        if self.likelihood == "bernoulli":
            return Bernoulli(out[0])
        mean, raw = out
        floor = GAUSSIAN_MIN_LOG_VAR
        return Gaussian(mean, floor + losses.softplus(raw - floor))


class M2(nn.Module):
    """The M2 model (Kingma et al. 2014, Section 3.1.2): generative p(y) p(z) p(x|y, z),
    inference q(z|x, y) and the classifier q(y|x).

    `classifier` (a `ClassifierHead`), `encoder` (a `StyleEncoder`) and `decoder` (a
    `DecoderHead`) on an architecture's trunks; `dense_m2` builds the paper's (MLPs of
    `hidden_sizes`, (500,) in the paper). The likelihood is "bernoulli" (pixels in [0, 1])
    or "gaussian" (M1 codes, unbounded reals). x has `output_dim` values. Parameters:
    `classifier`, `encoder`, `decoder`.
    """

    classifier: nn.Module
    encoder: nn.Module
    decoder: nn.Module
    num_classes: int
    latent_dim: int
    output_dim: int
    likelihood: str = "bernoulli"

    def setup(self) -> None:
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood={self.likelihood!r}; allowed: {LIKELIHOODS}")

    def classify(self, x: jax.Array) -> jax.Array:
        """x [..., D] -> logits [..., C] of q(y|x)."""
        return self.classifier(x)

    def encode(self, x: jax.Array, y: jax.Array) -> Gaussian:
        """x [B, D], one-hot y [..., B, C] (e.g. [C, B, C]: every class) -> q(z|x, y)
        [..., B, L]; x's first-layer product is computed once for all leading axes of y."""
        return self.encoder(x, y)

    def decode(self, z: jax.Array, y: jax.Array) -> Bernoulli | Gaussian:
        """z [..., L], one-hot y [..., C] (leading axes broadcast) -> p(x|y, z) [..., D]."""
        lead = jnp.broadcast_shapes(z.shape[:-1], y.shape[:-1])
        zy = jnp.concatenate([jnp.broadcast_to(z, (*lead, z.shape[-1])),
                              jnp.broadcast_to(y, (*lead, y.shape[-1])).astype(z.dtype)], -1)
        return self.decoder(zy)

    def generate(self, z: jax.Array, y: jax.Array) -> jax.Array:
        """The decoder mean E[x|y, z] [..., D]: pixels in [0, 1] (Bernoulli), or M1 codes."""
        return self.decode(z, y).mean()

    def __call__(self, x: jax.Array, y: jax.Array, key: jax.Array
                 ) -> tuple[jax.Array, Gaussian, Bernoulli | Gaussian]:
        """For `init`: x [B, D], one-hot y [B, C] -> (logits [B, C], q(z|x, y) [B, L],
        p(x|y, z) [B, D]) with z ~ q(z|x, y)."""
        logits = self.classify(x)
        posterior = self.encode(x, y)
        return logits, posterior, self.decode(posterior.sample(key), y)


def dense_m2(num_classes: int, hidden_sizes: Sequence[int], latent_dim: int, output_dim: int,
             likelihood: str = "bernoulli", activation: str = "softplus",
             kernel_init: str = "lecun_normal") -> M2:
    """The paper's M2: every network an MLP of `hidden_sizes` (the modules that
    `m2.architecture='mlp'` builds)."""
    sizes = tuple(hidden_sizes)
    channels, output_name = models.PIXEL_OUTPUTS.get(likelihood, (1, "logits"))
    return M2(
        classifier=ClassifierHead(models.MLP(sizes, activation, kernel_init, name="mlp"),
                                  num_classes, kernel_init),
        encoder=StyleEncoder(models.MLP((), activation, kernel_init), sizes, latent_dim,
                             activation, kernel_init),
        decoder=DecoderHead(models.MLPDecoder(sizes, output_dim, channels, activation,
                                              kernel_init, output_name), likelihood),
        num_classes=num_classes, latent_dim=latent_dim, output_dim=output_dim,
        likelihood=likelihood)


def init_params(model: M2, key: jax.Array) -> Params:
    """The parameters of `model`, from `key`, initialised on one dummy example."""
    def init(key: jax.Array) -> Params:
        init_key, sample_key = jax.random.split(key)
        x = jnp.zeros((1, model.output_dim), jnp.float32)
        y = jax.nn.one_hot(jnp.zeros((1,), jnp.int32), model.num_classes)
        return model.init(init_key, x, y, sample_key)

    return jax.jit(init)(key)  # one compiled program; the values of op-by-op, bit for bit


# ----------------------------------------------------------------------------- objectives

def _neg_elbo_terms(model: M2, params: Params, x: jax.Array, y: jax.Array,
                    eps: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(recon = -log p(x|y, z), kl = KL(q(z|x, y) || N(0, I))), each [..., B], of x [B, D]
    and one-hot y [..., B, C], with z = mean + sigma * eps, eps [..., B, L]."""
    posterior = model.apply(params, x, y, method=model.encode)
    z = posterior.loc + jnp.exp(0.5 * posterior.log_var) * eps
    likelihood = model.apply(params, z, y, method=model.decode)
    recon = -likelihood.log_prob(jnp.broadcast_to(x, (*z.shape[:-1], x.shape[-1])))
    return recon, posterior.kl_from_standard_normal()


def labeled_terms(model: M2, params: Params, x: jax.Array, y: jax.Array, key: jax.Array
                  ) -> dict[str, jax.Array]:
    """-L(x, y) (eq. 6) and the classifier's terms, each per example [B], for x [B, D]
    (float model inputs) and labels y int [B]:

    `neg_elbo` = -log p(x|y, z) + KL(q(z|x, y) || N(0, I)) + log C (one z ~ q(z|x, y)
    reparameterised from `key`, the KL in closed form, log p(y) = -log C), `recon`, `kl`,
    `cross_entropy` = -log q(y|x), `accuracy` = [argmax q(y|x) == y] (float).
    """
    num_classes = model.num_classes
    one_hot = jax.nn.one_hot(y, num_classes, dtype=x.dtype)
    eps = jax.random.normal(key, (x.shape[0], model.latent_dim), x.dtype)
    recon, kl = _neg_elbo_terms(model, params, x, one_hot, eps)
    log_q_y = jax.nn.log_softmax(model.apply(params, x, method=model.classify), axis=-1)
    cross_entropy = -jnp.take_along_axis(log_q_y, y[:, None], axis=-1)[:, 0]
    accuracy = (jnp.argmax(log_q_y, axis=-1) == y).astype(x.dtype)
    return {"neg_elbo": recon + kl + math.log(num_classes), "recon": recon, "kl": kl,
            "cross_entropy": cross_entropy, "accuracy": accuracy}


def unlabeled_terms(model: M2, params: Params, x: jax.Array, key: jax.Array
                    ) -> dict[str, jax.Array]:
    """-U(x) (eq. 7) per example [B] for x [B, D], the sum over the C classes exact:

    `neg_bound` = sum_y q(y|x) (-L(x, y)) - H(q(y|x)), `entropy` = H(q(y|x)), and the
    q(y|x)-weighted `recon` and `kl`. All classes go through the encoder and decoder as one
    [C, B] batch; class c draws its z with key `jax.random.split(key, C)[c]`, the draw
    `labeled_terms(..., y=full(c), key=split(key, C)[c])` makes.
    """
    num_classes, batch = model.num_classes, x.shape[0]
    ys = jnp.broadcast_to(jnp.eye(num_classes, dtype=x.dtype)[:, None, :],
                          (num_classes, batch, num_classes))                # [C, B, C]
    keys = jax.random.split(key, num_classes)
    eps = jax.vmap(lambda k: jax.random.normal(k, (batch, model.latent_dim), x.dtype))(keys)
    recon, kl = _neg_elbo_terms(model, params, x, ys, eps)                  # [C, B]
    neg_elbo = recon + kl + math.log(num_classes)
    log_q = jax.nn.log_softmax(model.apply(params, x, method=model.classify), axis=-1)
    q = jnp.exp(log_q).T                                                    # [C, B]
    entropy = -jnp.sum(q * log_q.T, axis=0)
    return {"neg_bound": jnp.sum(q * neg_elbo, axis=0) - entropy, "entropy": entropy,
            "recon": jnp.sum(q * recon, axis=0), "kl": jnp.sum(q * kl, axis=0)}


def m2_loss(model: M2, params: Params, x_unlabeled: jax.Array, x_labeled: jax.Array,
            y_labeled: jax.Array, key: jax.Array, *, alpha: float, labeled_fraction: float
            ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """J^alpha / N (eq. 9) from an unlabelled batch [Bu, D] and a labelled one [Bl, D] with
    labels int [Bl]:

      loss = labeled_fraction * mean(-L(x, y)) + (1 - labeled_fraction) * mean(-U(x))
             + alpha * mean(-log q(y|x) over the labelled batch),

    `labeled_fraction` = N_l / N and `alpha` the paper's alpha / N (0.1). `key` splits into
    the labelled and the unlabelled key (in that order). Returns (scalar loss, scalars
    `loss`, `labeled_neg_elbo`, `unlabeled_neg_bound`, `cross_entropy`,
    `labeled_accuracy`, `entropy`).
    """
    labeled_key, unlabeled_key = jax.random.split(key)
    lab = labeled_terms(model, params, x_labeled, y_labeled, labeled_key)
    unlab = unlabeled_terms(model, params, x_unlabeled, unlabeled_key)
    metrics = {"labeled_neg_elbo": jnp.mean(lab["neg_elbo"]),
               "unlabeled_neg_bound": jnp.mean(unlab["neg_bound"]),
               "cross_entropy": jnp.mean(lab["cross_entropy"]),
               "labeled_accuracy": jnp.mean(lab["accuracy"]),
               "entropy": jnp.mean(unlab["entropy"])}
    loss = (labeled_fraction * metrics["labeled_neg_elbo"]
            + (1.0 - labeled_fraction) * metrics["unlabeled_neg_bound"]
            + alpha * metrics["cross_entropy"])
    return loss, {"loss": loss, **metrics}


# ----------------------------------------------------------------------------- predictions

def class_probabilities(model: M2, params: Params, x: jax.Array) -> jax.Array:
    """q(y|x) [B, C] of x [B, D]: the classifier's softmax."""
    return jax.nn.softmax(model.apply(params, x, method=model.classify), axis=-1)


def class_conditional_samples(model: M2, params: Params, z: jax.Array) -> jax.Array:
    """Decoder means [C * S, D] of styles z [S, L]: row c (S images) is class c, column s the
    same style z_s for every class (the paper's class-conditional samples)."""
    num_classes = model.num_classes
    ys = jnp.eye(num_classes, dtype=z.dtype)[:, None, :]                    # [C, 1, C]
    zs = jnp.broadcast_to(z, (num_classes, *z.shape))                      # [C, S, L]
    images = model.apply(params, zs, ys, method=model.generate)             # [C, S, D]
    return images.reshape(num_classes * z.shape[0], images.shape[-1])


def analogies(model: M2, params: Params, x: jax.Array) -> jax.Array:
    """The paper's analogies [(C + 1) * S, D] of x [S, D]: the first row x itself, then row c
    the decoder mean of (the mean of q(z|x_s, y_hat_s), class c), y_hat = argmax q(y|x):
    each test image's style, in every class."""
    y_hat = jnp.argmax(model.apply(params, x, method=model.classify), axis=-1)
    one_hot = jax.nn.one_hot(y_hat, model.num_classes, dtype=x.dtype)
    style = model.apply(params, x, one_hot, method=model.encode).mean()     # [S, L]
    return jnp.concatenate([x, class_conditional_samples(model, params, style)], axis=0)
