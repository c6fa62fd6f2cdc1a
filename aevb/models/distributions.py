"""Distribution parameters as typed values: what a model returns, and what scores it.

A decoder returns a `Bernoulli` or a `Gaussian`, an encoder a `Gaussian`, a VAE's prior a
`StandardNormal` or a `GaussianMixture` (the VampPrior); the type says which, so code
scores `dist.log_prob(x)` and draws pictures from `dist.mean()` without asking which
decoder made it. All are Flax pytrees (they pass through `jit`, `vmap` and `lax.map`) and
their densities are the tested functions of `aevb/models/losses.py`.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

from aevb.models import losses


@flax.struct.dataclass
class Bernoulli:
    """Independent Bernoullis over the last axis, by their logits [..., D]."""

    logits: jax.Array

    def log_prob(self, x: jax.Array) -> jax.Array:
        """log p(x) [...] of targets x [..., D] in [0, 1]."""
        return losses.bernoulli_log_likelihood(self.logits, x)

    def mean(self) -> jax.Array:
        """E[x] = sigmoid(logits) [..., D]."""
        return jax.nn.sigmoid(self.logits)


@flax.struct.dataclass
class Gaussian:
    """A diagonal Gaussian N(loc, diag(exp(log_var))) over the last axis, each [..., D]."""

    loc: jax.Array
    log_var: jax.Array

    def log_prob(self, x: jax.Array) -> jax.Array:
        """log density [...] of x [..., D]."""
        return losses.gaussian_log_likelihood(x, self.loc, self.log_var)

    def mean(self) -> jax.Array:
        return self.loc

    def kl_from_standard_normal(self) -> jax.Array:
        """KL(self || N(0, I)) [...] in closed form."""
        return losses.kl_standard_normal(self.loc, self.log_var)

    def sample(self, key: jax.Array, num_samples: int | None = None) -> jax.Array:
        """Reparameterised z = loc + sigma * eps: [..., D], or [num_samples, ..., D]."""
        shape = self.loc.shape if num_samples is None else (num_samples, *self.loc.shape)
        eps = jax.random.normal(key, shape, self.loc.dtype)
        return self.loc + jnp.exp(0.5 * self.log_var) * eps


@flax.struct.dataclass
class StandardNormal:
    """N(0, I) over the last axis, of `dim` dimensions: the VAE's standard prior."""

    dim: int = flax.struct.field(pytree_node=False)

    def log_prob(self, z: jax.Array) -> jax.Array:
        """log N(z | 0, I) [...] of z [..., dim]."""
        return losses.standard_normal_log_density(z)

    def sample(self, key: jax.Array, num_samples: int) -> jax.Array:
        """[num_samples, dim] draws."""
        return jax.random.normal(key, (num_samples, self.dim))


@flax.struct.dataclass
class GaussianMixture:
    """The equally weighted mixture (1/K) sum_k N(loc_k, diag(exp(log_var_k))) of K diagonal
    Gaussians, loc and log_var [K, L]: the VampPrior (a mixture of posteriors)."""

    loc: jax.Array
    log_var: jax.Array

    def log_prob(self, z: jax.Array) -> jax.Array:
        """log density [...] of z [..., L]."""
        return losses.gaussian_mixture_log_density(z, self.loc, self.log_var)

    def sample(self, key: jax.Array, num_samples: int) -> jax.Array:
        """[num_samples, L] draws: a component drawn uniformly, then a draw from it."""
        pick_key, eps_key = jax.random.split(key)
        k = jax.random.randint(pick_key, (num_samples,), 0, self.loc.shape[0])
        eps = jax.random.normal(eps_key, (num_samples, self.loc.shape[-1]), self.loc.dtype)
        return self.loc[k] + jnp.exp(0.5 * self.log_var[k]) * eps
