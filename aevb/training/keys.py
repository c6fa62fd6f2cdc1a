"""Named PRNG keys: the only place where a seed becomes keys.

`run_keys(train.seed)` gives every stream a run draws from, by name; `data_keys(data.seed)`
the fixed draws of the data (the binarization of the test and validation sets, and of the
training set for the PCA baseline). A regime that needs more keys derives them as
`fold_in(named key, index)` (phase k of a layer-wise run: `fold_in(keys.train, k)`), never
by splitting at a position or folding in a number that another file has to match.

The streams are those of earlier versions of aevb (`split(key(seed), 4)`, then the final
key folded from the eval key), so the figures in the README were measured with these keys.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax


class RunKeys(NamedTuple):
    """The keys of one run [or, under `jax.vmap(run_keys)`, of T trials: each [T]]."""

    init: jax.Array        # parameters
    train: jax.Array       # epoch e: fold_in(train, e) -> permutation, binarization, noise
    eval: jax.Array        # periodic evaluation at epoch e: fold_in(eval, e)
    pictures: jax.Array    # samples and noise drawn for the pictures
    final: jax.Array       # end-of-run measurements (L_k, denoising error)
    classifier: jax.Array  # pretraining's classifier phase: initialisation and batches


PRNG_IMPLS = ("threefry2x32", "rbg", "unsafe_rbg")


@functools.partial(jax.jit, static_argnames="impl")  # one program at start-up, not eight ops
def run_keys(seed: int | jax.Array, impl: str = "threefry2x32") -> RunKeys:
    """The named keys of a run with `train.seed = seed` (traceable: vmap over seeds).

    `impl` (`train.prng_impl`) is the PRNG every key of the run uses: JAX's default
    threefry2x32 (the fastest here on CPU, and the streams of every figure in the README),
    or rbg / unsafe_rbg (XLA's RngBitGenerator, usually faster on TPU). Each gives its
    own streams; benchmarks/throughput.py measures them.
    """
    root = jax.random.key(seed, impl=impl)
    init, train, eval_key, pictures = jax.random.split(root, 4)
    return RunKeys(init=init, train=train, eval=eval_key, pictures=pictures,
                   final=jax.random.fold_in(eval_key, 10**6),
                   classifier=jax.random.fold_in(root, 1))


class DataKeys(NamedTuple):
    """Fixed draws of the data, from `data.seed`: the same for every run and trial."""

    test: jax.Array        # binarization of the test set
    validation: jax.Array  # binarization of the validation set
    train: jax.Array       # one binarization of the training set (the PCA baseline)


@jax.jit
def data_keys(seed: int) -> DataKeys:
    root = jax.random.key(seed)
    return DataKeys(*(jax.random.fold_in(root, i) for i in (1, 2, 3)))


class ClassifierKeys(NamedTuple):
    """The keys the classifiers of a run draw from, all from `RunKeys.classifier`."""

    init: jax.Array         # a classifier's or M2's initial parameters
    train: jax.Array        # pretraining's classifier: round r ending at step s: fold_in(s)
    m2_train: jax.Array     # M2's epochs: epoch e: fold_in(m2_train, e)
    m2_pictures: jax.Array  # M2's class samples


def classifier_keys(run: RunKeys) -> ClassifierKeys:
    return ClassifierKeys(*(jax.random.fold_in(run.classifier, i) for i in range(4)))
