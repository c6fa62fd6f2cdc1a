"""The variational autoencoder family (Kingma & Welling 2014): its objective, its ELBO,
importance-weighted log-likelihood and active units, its pictures, its encoder.

Objective (per example): `loss = kl_weight * KL(q(z|x~) || N(0, I)) - log p(x|z)` with one
reparameterised z ~ q(z|x~), which is -ELBO (nats) for kl_weight = 1. x~ is x corrupted by
the noise regime (a denoising VAE); the reconstruction term always scores the clean x.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh

from aevb import checks, losses, models, noise, parallel, plots
from aevb.distributions import Gaussian
from aevb.evaluate import EvalData, map_in_chunks
from aevb.families.base import Family, Objective, Params


def vae_terms(model: models.VAE, params: Params, x: jax.Array, key: jax.Array,
              noise_kind: str = "none", noise_std: float = 0.0, noise_rate: float = 0.0,
              kl_weight: float = 1.0) -> dict[str, jax.Array]:
    """One-sample ELBO terms of a batch x [B, D], each per example [B]: `loss`,
    `recon` = -log p(x|z) and `kl` = KL(q(z|x~) || N(0, I)) in closed form."""
    noise_key, sample_key = jax.random.split(key)
    x_in = noise.corrupt(x, noise_kind, noise_key, noise_std, noise_rate)
    out = model.apply(params, x_in, sample_key)
    log_lik = out.likelihood.log_prob(x)
    kl = out.posterior.kl_from_standard_normal()
    return {"loss": kl_weight * kl - log_lik, "recon": -log_lik, "kl": kl}


@functools.partial(jax.jit, static_argnames=("model", "chunk_size", "mesh"))
def elbo_terms(model: models.VAE, params: Params, x: jax.Array, key: jax.Array,
               chunk_size: int, mesh: Mesh | None = None) -> dict[str, jax.Array]:
    """Per-example `neg_elbo`, `recon` and `kl` (nats) [N] of a whole split x [N, D]."""
    terms = map_in_chunks(functools.partial(vae_terms, model, params), x, key, chunk_size, mesh)
    return {"neg_elbo": terms["loss"], "recon": terms["recon"], "kl": terms["kl"]}


def _iwae_chunk(model: models.VAE, params: Params, num_samples: int, x: jax.Array,
                key: jax.Array) -> dict[str, jax.Array]:
    """L_k for a chunk x [C, D] with k = num_samples: encode once, decode [k, C] codes."""
    posterior = model.apply(params, x, method=model.encode)                 # [C, L]
    z = posterior.sample(key, num_samples)                                  # [k, C, L]
    likelihood = model.apply(params, z, method=model.decode)                # [k, C, D]
    log_p_x_given_z = likelihood.log_prob(jnp.broadcast_to(x, (num_samples, *x.shape)))
    log_p_z = losses.standard_normal_log_density(z)                        # [k, C]
    log_q_z = Gaussian(jnp.broadcast_to(posterior.loc, z.shape),
                       jnp.broadcast_to(posterior.log_var, z.shape)).log_prob(z)
    return {"log_likelihood": losses.importance_weighted_bound(log_p_x_given_z, log_p_z,
                                                               log_q_z)}


@functools.partial(jax.jit,
                   static_argnames=("model", "num_samples", "samples_per_chunk", "mesh"))
def importance_weighted_log_likelihood(model: models.VAE, params: Params, x: jax.Array,
                                       key: jax.Array, num_samples: int,
                                       samples_per_chunk: int = 20_000,
                                       mesh: Mesh | None = None) -> jax.Array:
    """The importance-weighted bound L_k (Burda et al. 2015) of log p(x), per example [N].

    L_k = log (1/k) sum_i p(x, z_i) / q(z_i|x), z_i ~ q(z|x): a lower bound that tightens
    towards log p(x) as k grows (in expectation L_1 is the ELBO). Chunks of
    max(1, samples_per_chunk // k) examples keep the [k, C, D] decoder output in memory.
    """
    chunk = max(1, samples_per_chunk // num_samples)
    fn = functools.partial(_iwae_chunk, model, params, num_samples)
    return map_in_chunks(fn, x, key, chunk, mesh)["log_likelihood"]


@functools.partial(jax.jit, static_argnames=("model", "chunk_size", "mesh"))
def posterior_means(model: models.VAE, params: Params, x: jax.Array, chunk_size: int,
                    mesh: Mesh | None = None) -> jax.Array:
    """E_q[z|x] for every example: [N, L]."""
    def fn(xc, _):
        return {"mean": model.apply(params, xc, method=model.encode).mean()}
    return map_in_chunks(fn, x, jax.random.key(0), chunk_size, mesh)["mean"]


def active_units(means: np.ndarray, threshold: float = 0.01) -> tuple[int, np.ndarray]:
    """Latent units whose posterior mean varies with x: Cov_x(E_q[z_u]) > threshold.

    means [N, L] -> (count, per-unit variance [L]). The criterion of Burda et al. (2015):
    an inactive unit encodes nothing, its posterior equals the prior for every input.
    """
    variance = np.var(np.asarray(means), axis=0)
    return int(np.sum(variance > threshold)), variance


class VAEFamily(Family):
    kind = "vae"
    headline = "neg_elbo"
    float_fields = ("noise.std", "noise.rate", "model.kl_weight")

    def validate(self, config: ml_collections.ConfigDict) -> None:
        checks.check_choice(config, "model.decoder", models.DECODERS)
        checks.check_number(config, "model.kl_weight", 0.0)

    def make_model(self, model_config: ml_collections.ConfigDict, num_pixels: int) -> nn.Module:
        return models.VAE(hidden_sizes=tuple(model_config.hidden_sizes),
                          latent_dim=model_config.latent_dim, output_dim=num_pixels,
                          likelihood=model_config.decoder, activation=model_config.activation)

    def init_params(self, model: nn.Module, key: jax.Array, num_pixels: int) -> Params:
        init_key, sample_key = jax.random.split(key)
        # One compiled program (persistently cached), not dozens of op-by-op ones; the same
        # values bit for bit.
        return jax.jit(model.init)(init_key, jnp.zeros((1, num_pixels), jnp.float32),
                                   sample_key)

    def objective(self, config: ml_collections.ConfigDict, model: nn.Module, train: bool,
                  hparams: dict[str, jax.Array] | None = None) -> Objective:
        value = {f: (hparams or {}).get(f, checks.get(config, f)) for f in self.float_fields}
        return functools.partial(
            vae_terms, model, noise_kind=config.noise.kind if train else "none",
            noise_std=value["noise.std"], noise_rate=value["noise.rate"],
            kl_weight=value["model.kl_weight"])

    def eval_terms(self, config, model, params, x, key, mesh):
        return elbo_terms(model, params, x, key, config.eval.batch_size, mesh)

    def final_metrics(self, config: ml_collections.ConfigDict, model: nn.Module,
                      params: Params, data: EvalData, key: jax.Array,
                      mesh: Mesh | None) -> dict[str, float | int]:
        """`test_log_likelihood` (L_k with k = eval.iwae_k on the first
        eval.iwae_num_examples test examples) and `active_units`."""
        test_x = data.splits["test"]
        out: dict[str, float | int] = {}
        n = min(config.eval.iwae_num_examples, test_x.shape[0])
        if n:
            ll = importance_weighted_log_likelihood(
                model, params, test_x[:n], key, config.eval.iwae_k,
                config.eval.iwae_samples_per_chunk, mesh)
            out.update({"test_log_likelihood": float(parallel.fetch(jnp.mean(ll))),
                        "test_log_likelihood_k": config.eval.iwae_k,
                        "test_log_likelihood_examples": n})
        means = posterior_means(model, params, test_x, config.eval.batch_size, mesh)
        out["active_units"], _ = active_units(parallel.fetch(means))
        return out

    def pictures(self, config, model, params, test_x, image_shape, key, workdir):
        """`reconstructions.png` (from the posterior means), `samples.png` (decoded
        z ~ N(0, I)) and, with 2 latents, `latent_manifold.png` (the paper's figure 4)."""
        n = min(config.eval.num_images, test_x.shape[0])
        x = test_x[:n]
        recon = model.apply(params, model.apply(params, x, method=model.encode).mean(),
                            method=model.generate)
        written = [plots.save_reconstructions(x, recon, image_shape, workdir)]
        z = jax.random.normal(key, (n, config.model.latent_dim))
        samples = model.apply(params, z, method=model.generate)
        written.append(plots.save_grid(samples, image_shape, workdir, "samples.png"))
        if config.model.latent_dim == 2:
            side = 20
            grid = model.apply(params, jnp.asarray(plots.latent_grid(side)),
                               method=model.generate)
            written.append(plots.save_grid(grid, image_shape, workdir, "latent_manifold.png",
                                           columns=side, pad=0))
        return written

    def encoder_depth(self, model_config: ml_collections.ConfigDict) -> int:
        return len(model_config.hidden_sizes) + 1

    def encoder(self, model_config, num_pixels, params, num_layers=0):
        """All layers: the mean of q(z|x) (`PosteriorMean`, the encoder's own parameters);
        fewer: the lower hidden layers (`MLP`)."""
        depth = self.encoder_depth(model_config)
        num_layers = num_layers or depth
        hidden, act = tuple(model_config.hidden_sizes), model_config.activation
        if num_layers == depth:
            module = models.PosteriorMean(hidden, model_config.latent_dim, act)
            return module, None if params is None else {"params": params["params"]["encoder"]}
        module = models.MLP(hidden[:num_layers], act)
        if params is None:
            return module, None
        mlp = params["params"]["encoder"]["mlp"]
        return module, {"params": {f"hidden_{i}": mlp[f"hidden_{i}"] for i in range(num_layers)}}
