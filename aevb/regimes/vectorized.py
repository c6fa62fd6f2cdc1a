"""Vectorized sweeps: trials that differ only in seed or float hyperparameters, trained as one.

`train_trials` stacks T trials' train states on a leading trial axis and trains them with
`jax.vmap` of the ordinary epoch function (`aevb/training/epoch.py`), through the one loop
(`aevb/training/loop.py`) with one metrics file per trial: one compilation, one data load, and per
step [T, B, D] x [T, D, H] batched matmuls instead of T small ones. With several devices
the trial axis is split over the mesh when T divides evenly. Each trial's keys are its own
seed's `keys.run_keys`, so a trial's numbers are those of the same trial run alone, up to
float rounding (tests/test_sweeps.py checks it).

Vectorizable fields: `train.seed`, `train.learning_rate` (the schedule's peak, held in the
optimizer state via `optax.inject_hyperparams`; the schedule's shape is shared) and the
families' objective float fields.
"""

from __future__ import annotations

import functools
import hashlib
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from aevb import families
from aevb.config import checks
from aevb.evaluation.measures import split_evaluations
from aevb.regimes.prepare import eval_data, load_and_check, train_rows
from aevb.regimes.validation import validate, validate_against_data
from aevb.run import files, parallel
from aevb.run.workdir import claim
from aevb.training import keys, loop
from aevb.training.epoch import epoch_function
from aevb.training.train_state import TrainState, make_optimizer, num_parameters

VECTORIZABLE = ("train.seed", "train.learning_rate", *families.FLOAT_FIELDS)


def _trial_sharding(mesh, num_trials: int) -> NamedSharding:
    """Split the trial axis over the devices when it divides evenly; else replicate."""
    if num_trials % mesh.size == 0:
        return NamedSharding(mesh, P(parallel.DATA_AXIS))
    return parallel.replicated(mesh)


def train_trials(trials: list[tuple[str, ml_collections.ConfigDict]], workdir: str
                 ) -> list[dict[str, Any]]:
    """Trains the trials (name, config) together; each leaves its files in workdir/name.

    The configs must agree on every field but VECTORIZABLE (the router groups them so).
    The stacked state is checkpointed in workdir/_vectorized_<id>/checkpoints, so an
    interrupted group resumes where it stopped. Returns the trials' summaries.
    """
    names = [name for name, _ in trials]
    base = trials[0][1]
    datasets = load_and_check(base)
    num_train, shape, num_trials = datasets.num_train, datasets.image_shape, len(trials)
    for name, config in trials:
        validate(config)
        validate_against_data(config, num_train, shape, datasets.has_labels)
        claim(config, os.path.join(workdir, name), datasets.record())
    mesh = parallel.make_mesh()
    family = families.get(base.model.kind)
    model = family.make_model(base.model, shape)
    steps = num_train // base.train.batch_size
    tx = make_optimizer(base.train, base.train.num_epochs * steps)
    trial_keys = jax.vmap(functools.partial(keys.run_keys, impl=base.train.prng_impl))(
        jnp.asarray([c.train.seed for _, c in trials]))
    hparams = {f: jnp.asarray([float(checks.get(c, f)) for _, c in trials], jnp.float32)
               for f in family.float_fields}

    def init(key, learning_rate):
        state = TrainState.create(family.init_params(model, key, shape), tx)
        state.opt_state.hyperparams["learning_rate"] = jnp.asarray(learning_rate, jnp.float32)
        return state

    sharding = _trial_sharding(mesh, num_trials)
    states = jax.device_put(jax.vmap(init)(trial_keys.init, jnp.asarray(
        [c.train.learning_rate for _, c in trials], jnp.float32)), sharding)
    group_id = hashlib.sha1("\n".join(names).encode()).hexdigest()[:10]
    checkpoints = files.checkpoint_dir(workdir, f"_vectorized_{group_id}")
    run = loop.Run([os.path.join(workdir, n) for n in names], trial_names=names)
    images = train_rows(datasets, mesh)
    data = eval_data(base, datasets, mesh)

    def one_epoch(state, imgs, key, hp):
        objective = family.objective(base, model, train=True, hparams=hp,
                                     steps_per_epoch=steps)
        return epoch_function(objective, tx, base.train.batch_size, base.data.binarize,
                              num_examples=num_train)(state, imgs, key)

    epoch_fn = jax.jit(jax.vmap(one_epoch, in_axes=(0, None, 0, 0)), donate_argnums=0,
                       out_shardings=sharding)
    periodic, reported = split_evaluations(functools.partial(family.eval_terms, base, model),
                                           data.splits, base.eval.test_while_training, trials=True)
    num_epochs = base.train.num_epochs
    run.log(f"vectorized: {num_trials} trials in one program ({', '.join(names)}), "
            f"{num_epochs} epochs of {steps} steps")
    result = run.train(loop.Phase(
        state=states, num_rounds=num_epochs,
        run=lambda s, _, key: epoch_fn(s, images, key, hparams),
        evaluate=periodic, evaluate_reported=reported, checkpoint_dir=checkpoints,
        keys=(trial_keys.train, trial_keys.eval),
        cadence=loop.cadence(base),
        display=loop.Display(headline=family.headline,
                             examples_per_round=num_trials * steps * base.train.batch_size)))

    all_params = parallel.fetch(result.state.params)
    test_x = parallel.fetch(data.splits["test"])
    summaries, finals, pictures = [], [], []
    for t, (name, config) in enumerate(trials):
        params = jax.tree.map(lambda a, t=t: a[t], all_params)
        with run.timed("evaluation"):
            final = family.final_metrics(config, model, params, data, trial_keys.final[t], mesh)
        summaries.append({"experiment": config.experiment, "dataset": datasets.name,
                          "epochs": num_epochs, "steps": num_epochs * steps,
                          "num_params": num_parameters(params), **result.train[t],
                          **result.eval[t], **final, "train_seconds": result.seconds,
                          "vectorized_trials": num_trials})
        finals.append(final)
        pictures.append(functools.partial(
            family.pictures, config, model, params, test_x, data.image_shape,
            trial_keys.pictures[t], os.path.join(workdir, name)))
    run.finish(summaries, finals, pictures)
    return summaries
