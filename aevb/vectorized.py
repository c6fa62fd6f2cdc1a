"""Vectorized sweeps: trials that differ only in seed or float hyperparameters, trained as one.

`train_trials` stacks T trials' train states on a leading trial axis and trains them with
`jax.vmap` of the ordinary epoch function: one compilation, one data load, and per step
[T, B, D] x [T, D, H] batched matmuls instead of T small ones. With several devices the
trial axis is split over the mesh when T divides evenly. Each trial's keys are derived
from its own seed exactly as a single run derives them, so a trial's numbers are those of
the same trial run alone, up to float rounding (tests/test_sweeps.py checks it).

Vectorizable fields: `train.seed`, `train.learning_rate` (held in the optimizer state via
`optax.inject_hyperparams`) and the objectives' float fields (`objectives.FLOAT_FIELDS`).
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from aevb import configs, evaluate, objectives, parallel, plots, train
from aevb.metrics import MetricWriter

VECTORIZABLE = ("train.seed", "train.learning_rate", *objectives.FLOAT_FIELDS)


def _get(config: ml_collections.ConfigDict, field: str) -> Any:
    section, name = field.split(".")
    return config[section][name]


def _trial_keys(seeds: list[int]) -> dict[str, jax.Array]:
    """Per-trial init/train/eval/picture keys [T], derived as train_and_evaluate does."""
    keys = jax.vmap(lambda s: jax.random.split(jax.random.key(s), 4))(jnp.asarray(seeds))
    return {name: keys[:, i] for i, name in enumerate(("init", "train", "eval", "picture"))}


def _init_states(model, tx, init_keys: jax.Array, learning_rates: jax.Array, num_pixels: int):
    def one(key, lr):
        state = train.create_train_state(model, tx, key, num_pixels)
        state.opt_state.hyperparams["learning_rate"] = jnp.asarray(lr, jnp.float32)
        return state
    return jax.vmap(one)(init_keys, learning_rates)


def _trial_sharding(mesh, num_trials: int) -> NamedSharding:
    """Split the trial axis over the devices when it divides evenly; else replicate."""
    if num_trials % mesh.size == 0:
        return NamedSharding(mesh, P(parallel.DATA_AXIS))
    return parallel.replicated(mesh)


def train_trials(trials: list[tuple[str, ml_collections.ConfigDict]], workdir: str
                 ) -> list[dict[str, Any]]:
    """Trains the trials (name, config) together; each leaves its files in workdir/name.

    The configs must agree on every field but VECTORIZABLE (sweeps.py groups them so).
    The stacked state is checkpointed every epoch in workdir/_vectorized_<id>, so an
    interrupted group resumes where it stopped. Returns the trials' summaries.
    """
    names = [name for name, _ in trials]
    base = trials[0][1]
    datasets = train.load_and_check(base)
    for _, config in trials[1:]:
        configs.validate(config)
        configs.validate_against_data(config, datasets.train.images.shape[0])
    for name, config in trials:
        train.write_or_check_config(config, os.path.join(workdir, name))
    mesh = parallel.make_mesh()
    num_pixels, num_trials = datasets.num_pixels, len(trials)
    model = train.make_model(base.model, num_pixels)
    tx = train.make_optimizer(base.train, injectable=True)
    keys = _trial_keys([c.train.seed for _, c in trials])
    hparams = {f: jnp.asarray([float(_get(c, f)) for _, c in trials], jnp.float32)
               for f in objectives.FLOAT_FIELDS}
    learning_rates = jnp.asarray([c.train.learning_rate for _, c in trials], jnp.float32)
    states = _init_states(model, tx, keys["init"], learning_rates, num_pixels)
    sharding = _trial_sharding(mesh, num_trials)
    states = jax.device_put(states, sharding)

    group_id = hashlib.sha1("\n".join(names).encode()).hexdigest()[:10]
    group_dir = os.path.join(workdir, f"_vectorized_{group_id}")
    manager = train.checkpoint_manager(group_dir, base.train)
    states, start_epoch = train.restore_or_keep(manager, states)
    writers = [MetricWriter(os.path.join(workdir, n), resume_after_epoch=start_epoch)
               for n in names]

    images = parallel.replicate(datasets.train.images.reshape(-1, num_pixels), mesh)
    splits = train.eval_inputs(base, datasets, mesh)

    def one_epoch(state, imgs, key, hp):
        objective = objectives.make(base, model, train=True, hparams=hp)
        return train.epoch_function(objective, tx, base.train.batch_size,
                                    base.data.binarize)(state, imgs, key)

    epoch_fn = jax.jit(jax.vmap(one_epoch, in_axes=(0, None, 0, 0)), donate_argnums=0,
                       out_shardings=sharding)
    steps = datasets.train.images.shape[0] // base.train.batch_size
    num_epochs = base.train.num_epochs
    print(f"vectorized: {num_trials} trials in one program ({', '.join(names)}), "
          f"{num_epochs} epochs of {steps} steps", flush=True)
    t_start = time.perf_counter()
    last_train: list[dict[str, float]] = [{} for _ in names]
    for epoch in range(start_epoch + 1, num_epochs + 1):
        t0 = time.perf_counter()
        epoch_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys["train"], epoch)
        states, metrics = epoch_fn(states, images, epoch_keys, hparams)
        metrics = parallel.fetch(metrics)
        losses = metrics["loss"]
        if not np.all(np.isfinite(losses)):
            bad = [n for n, loss in zip(names, losses, strict=True) if not math.isfinite(loss)]
            raise train.NonFiniteLossError(
                f"epoch {epoch}: non-finite training loss in trials {bad}; stopped. The last "
                f"good checkpoint (epoch {manager.latest_step()}) is kept in {group_dir}.")
        evals = [{} for _ in names]
        if epoch % base.eval.every_epochs == 0 or epoch == num_epochs:
            evals = _evaluate_trials(base, model, states.params, splits,
                                     jax.vmap(jax.random.fold_in, in_axes=(0, None))(
                                         keys["eval"], epoch), mesh)
        step = epoch * steps
        for t, writer in enumerate(writers):
            last_train[t] = {f"train_{k}": float(v[t]) for k, v in metrics.items()}
            writer.write(epoch, step, {**last_train[t], **evals[t]})
        if epoch % base.train.checkpoint_every_epochs == 0 or epoch == num_epochs:
            manager.save(epoch, args=ocp.args.StandardSave(states))
        rate = num_trials * steps * base.train.batch_size / (time.perf_counter() - t0)
        print(f"epoch {epoch:3d}/{num_epochs}  loss " + " ".join(f"{v:.4g}" for v in losses)
              + f"  {rate:,.0f} trial-ex/s", flush=True)
    manager.wait_until_finished()
    train_seconds = time.perf_counter() - t_start

    summaries = []
    final_evals = evals if start_epoch < num_epochs else _evaluate_trials(
        base, model, states.params, splits,
        jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys["eval"], num_epochs), mesh)
    t_final = time.perf_counter()
    all_params = parallel.fetch(states.params)
    train_x = datasets.train.images.reshape(-1, num_pixels)
    for t, (name, config) in enumerate(trials):
        params = jax.tree.map(lambda a, t=t: a[t], all_params)
        trial_dir = os.path.join(workdir, name)
        final = evaluate.final_metrics(
            config, model, params, splits["test"], train_x, jax.random.fold_in(
                keys["eval"][t], 10**6), f"{datasets.name}/{config.data.dir or 'default'}/"
            f"{config.data.binarize}/train={datasets.train.images.shape[0]}/"
            f"val_seed={config.data.seed}", mesh)
        summary = {"experiment": config.experiment, "dataset": datasets.name,
                   "epochs": num_epochs, "steps": num_epochs * steps,
                   "num_params": sum(x.size for x in jax.tree.leaves(params)),
                   **last_train[t], **final_evals[t], **final, "train_seconds": train_seconds,
                   "vectorized_trials": num_trials}
        if jax.process_index() == 0:
            plots.save_run_pictures(config, model, params, parallel.fetch(splits["test"]),
                                    datasets.image_shape, keys["picture"][t], trial_dir)
        train.write_summary(trial_dir, summary, writers[t], num_epochs, num_epochs * steps,
                            final)
        writers[t].close()
        summaries.append(summary)
    manager.close()
    print(f"vectorized: {train_seconds:.1f} s training and evaluation, "
          f"{time.perf_counter() - t_final:.1f} s final measurements of {num_trials} trials",
          flush=True)
    return summaries


def _evaluate_trials(config, model, params, splits, keys, mesh) -> list[dict[str, float]]:
    """evaluate.evaluate_splits for every trial at once (vmapped over the trial axis)."""
    num_trials = keys.shape[0]
    out: list[dict[str, float]] = [{} for _ in range(num_trials)]
    for split, x in splits.items():
        if config.model.kind == "vae":
            terms = jax.vmap(lambda p, k, x=x: evaluate.elbo_terms(
                model, p, x, k, config.eval.batch_size))(params, keys)
            terms["neg_elbo"] = terms.pop("loss")
        else:
            terms = jax.vmap(lambda p, k, x=x: evaluate.reconstruction_terms(
                model, p, x, k, config.eval.batch_size))(params, keys)
            terms.pop("code")
        means = parallel.fetch({k: jnp.mean(v, axis=1) for k, v in terms.items()})
        for t in range(num_trials):
            out[t].update({f"{split}_{k}": float(v[t]) for k, v in means.items()})
    return out
