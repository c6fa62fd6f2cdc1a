"""Training: the train state, one compiled epoch, the loop with evaluation and checkpoints.

The shape of a run (`train_and_evaluate`):
  validate config -> load data -> check config against data -> (only now) write to workdir
  -> restore the last checkpoint if there is one -> epochs -> final evaluation -> summary.
A whole epoch is one compiled program: a `lax.scan` over batches gathered from the
on-device training set by a permutation drawn on the device, so Python dispatches once per
epoch. Keys: `fold_in(train_key, epoch)` per epoch, split into one key per step, so the
same seed gives the same numbers, also across an interruption and resume.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax
import orbax.checkpoint as ocp
from jax.sharding import Mesh

from aevb import configs, evaluate, models, objectives, parallel, plots
from aevb import data as data_lib
from aevb.metrics import MetricWriter


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss; the last good checkpoint is kept."""


class TrainState(flax.struct.PyTreeNode):
    """Everything that changes during training and goes into a checkpoint."""

    step: jax.Array
    params: Any
    opt_state: Any


def make_model(model_config: ml_collections.ConfigDict, num_pixels: int) -> nn.Module:
    """The Flax module `model.kind` asks for, with `num_pixels` (= H * W * C) outputs."""
    if model_config.kind == "vae":
        return models.VAE(hidden_sizes=tuple(model_config.hidden_sizes),
                          latent_dim=model_config.latent_dim, output_dim=num_pixels,
                          likelihood=model_config.decoder, activation=model_config.activation)
    return models.Autoencoder(hidden_sizes=tuple(model_config.hidden_sizes),
                              code_dim=model_config.latent_dim, output_dim=num_pixels,
                              activation=model_config.activation,
                              code_activation=model_config.code_activation,
                              output_activation=model_config.output_activation,
                              tied_weights=model_config.tied_weights)


def _optimizer(learning_rate, name: str, weight_decay: float) -> optax.GradientTransformation:
    if name == "adamw":
        return optax.adamw(learning_rate, weight_decay=weight_decay)
    base = {"adam": optax.adam, "adagrad": optax.adagrad, "sgd": optax.sgd,
            "rmsprop": optax.rmsprop}[name](learning_rate)
    return optax.chain(optax.add_decayed_weights(weight_decay), base) if weight_decay else base


def make_optimizer(train_config: ml_collections.ConfigDict,
                   injectable: bool = False) -> optax.GradientTransformation:
    """Optax optimizer from `train.optimizer`, `train.learning_rate`, `train.weight_decay`.

    `injectable`: the learning rate lives in the optimizer state
    (`opt_state.hyperparams['learning_rate']`), so trials with different rates can share
    one compiled, vmapped program.
    """
    factory = functools.partial(_optimizer, name=train_config.optimizer,
                                weight_decay=train_config.weight_decay)
    if injectable:
        return optax.inject_hyperparams(factory, static_args=("name", "weight_decay"))(
            learning_rate=train_config.learning_rate)
    return factory(train_config.learning_rate)


def create_train_state(model: nn.Module, tx: optax.GradientTransformation, key: jax.Array,
                       num_pixels: int) -> TrainState:
    """Fresh parameters from `key` and the optimizer's initial state."""
    init_key, sample_key = jax.random.split(key)
    x = jnp.zeros((1, num_pixels), jnp.float32)
    params = (model.init(init_key, x, sample_key) if isinstance(model, models.VAE)
              else model.init(init_key, x))
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))


def preprocess(images: jax.Array, binarize: str, key: jax.Array) -> jax.Array:
    """uint8 pixels [B, D] -> float32 model input [B, D] under `data.binarize`."""
    return data_lib.binarize(data_lib.to_unit_interval(images), binarize, key)


def apply_gradients(state: TrainState, tx: optax.GradientTransformation,
                    loss_fn: Callable[..., tuple[jax.Array, dict[str, jax.Array]]]
                    ) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer step on `loss_fn(params) -> (scalar loss, per-example terms {k: [B]})`.

    Returns the new state and the batch means of the terms.
    """
    (_, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {k: jnp.mean(v) for k, v in terms.items()}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics


def epoch_function(objective: Callable[..., dict[str, jax.Array]],
                   tx: optax.GradientTransformation, batch_size: int, binarize: str | None,
                   mesh: Mesh | None = None,
                   ) -> Callable[..., tuple[TrainState, dict[str, jax.Array]]]:
    """`train_epoch(state, inputs [N, D], key) -> (state, metrics)`, not yet jitted.

    inputs are uint8 images, preprocessed per batch under `binarize`, or with
    `binarize=None` float model inputs used as they are (e.g. the codes of frozen layers).
    The epoch visits floor(N / batch_size) batches of a fresh permutation (the remainder is
    dropped, a different one every epoch). Metrics are means over the epoch's steps.
    With a mesh, state and images are replicated and every batch is split over the `data`
    axis (see aevb/parallel.py); the numbers are those of one device, up to float rounding.
    """

    def train_step(state: TrainState, images: jax.Array, key: jax.Array):
        bin_key, model_key = jax.random.split(key)
        x = parallel.shard_batch(images, mesh)
        if binarize is not None:
            x = preprocess(x, binarize, bin_key)

        def loss_fn(params):
            terms = objective(params, x, model_key)
            return jnp.mean(terms["loss"]), terms

        return apply_gradients(state, tx, loss_fn)

    def train_epoch(state: TrainState, images: jax.Array, key: jax.Array):
        perm_key, step_key = jax.random.split(key)
        num_steps = images.shape[0] // batch_size
        perm = jax.random.permutation(perm_key, images.shape[0])
        batches = perm[:num_steps * batch_size].reshape(num_steps, batch_size)
        step_keys = jax.random.split(step_key, num_steps)  # one vectorized draw per epoch

        def body(state, batch):
            idx, key = batch
            return train_step(state, images[idx], key)

        state, metrics = jax.lax.scan(body, state, (batches, step_keys))
        return state, jax.tree.map(jnp.mean, metrics)

    return train_epoch


def make_train_epoch(objective: Callable[..., dict[str, jax.Array]],
                     tx: optax.GradientTransformation, batch_size: int, binarize: str | None,
                     mesh: Mesh | None = None,
                     ) -> Callable[..., tuple[TrainState, dict[str, jax.Array]]]:
    """`epoch_function` compiled once; the incoming state is donated (its buffers reused)."""
    train_epoch = epoch_function(objective, tx, batch_size, binarize, mesh)
    if mesh is None:
        return jax.jit(train_epoch, donate_argnums=0)
    return jax.jit(train_epoch, donate_argnums=0, out_shardings=parallel.replicated(mesh))


# ----------------------------------------------------------------------------- checkpoints

def checkpoint_manager(workdir: str, train_config: ml_collections.ConfigDict
                       ) -> ocp.CheckpointManager:
    """Orbax manager of `<workdir>/checkpoints`, one checkpoint per saved epoch."""
    options = ocp.CheckpointManagerOptions(max_to_keep=train_config.max_checkpoints,
                                           enable_async_checkpointing=False)
    return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, "checkpoints")),
                                 options=options)


def restore_or_keep(manager: ocp.CheckpointManager, state: TrainState
                    ) -> tuple[TrainState, int]:
    """The latest checkpoint's state and epoch, or (state, 0) when there is none."""
    epoch = manager.latest_step()
    if epoch is None:
        return state, 0
    restored = manager.restore(epoch, args=ocp.args.StandardRestore(state))
    return restored, int(epoch)


# ----------------------------------------------------------------------------- run files

def _flatten(config: dict, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for k, v in config.items():
        if isinstance(v, dict):
            flat.update(_flatten(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = list(v) if isinstance(v, tuple) else v
    return flat


# Fields a resumed run may change: they do not alter the trajectory of earlier epochs.
_RESUMABLE_CHANGES = ("train.num_epochs", "train.checkpoint_every_epochs",
                      "train.max_checkpoints")


def write_or_check_config(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Writes `<workdir>/config.json`; on resume, refuses a config that would change history."""
    path = os.path.join(workdir, "config.json")
    current = json.loads(config.to_json())
    if os.path.exists(os.path.join(workdir, "config.json")):
        with open(path) as f:
            saved = _flatten(json.load(f))
        new = _flatten(current)
        # Fields newer than the saved run (absent from its config.json) are not compared.
        changed = sorted(k for k in saved
                         if saved[k] != new.get(k) and k not in _RESUMABLE_CHANGES
                         and not k.startswith("eval."))
        if changed:
            diffs = ", ".join(f"{k}: {saved.get(k)!r} -> {new.get(k)!r}" for k in changed)
            raise configs.ConfigError(
                f"workdir {workdir} holds a run with a different config ({diffs}); "
                "resume with the same config, or pass a new --workdir")
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        with open(path, "w") as f:
            json.dump(current, f, indent=2)


def write_summary(workdir: str, summary: dict[str, Any], writer: MetricWriter, epoch: int,
                  step: int, final: dict[str, Any]) -> None:
    """Ends a run's files: `summary.json`, and the numbers of `final` as the last,
    `"final": true` line of metrics.jsonl. Process 0 writes; the others do nothing."""
    if jax.process_index() != 0:
        return
    with open(os.path.join(workdir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    writer.write(epoch, step, {k: v for k, v in final.items() if isinstance(v, (int, float))},
                 final=True)


def _log(message: str) -> None:
    """Prints on process 0 only: one progress line per epoch, not one per host."""
    if jax.process_index() == 0:
        print(message, flush=True)


def _format_eta(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


# ----------------------------------------------------------------------------- the run

def load_and_check(config: ml_collections.ConfigDict) -> data_lib.Datasets:
    """Validates the config, loads the data, checks the config against it. Writes nothing."""
    configs.validate(config)
    datasets = data_lib.load(config.data)
    configs.validate_against_data(config, datasets.train.images.shape[0])
    parallel.check_batch_divisible(config.train.batch_size, "train.batch_size")
    return datasets


def eval_inputs(config: ml_collections.ConfigDict, datasets: data_lib.Datasets,
                mesh: Mesh) -> dict[str, jax.Array]:
    """Test (and validation) splits as model inputs on every device: float32 [N, D].

    Binarized once with a fixed key from `data.seed`, so every evaluation and every trial
    of a sweep scores the same inputs.
    """
    data_key = jax.random.key(config.data.seed)
    splits = {"test": datasets.test, "validation": datasets.validation}
    out = {}
    for i, (name, split) in enumerate(splits.items()):
        if split is not None:
            images = jnp.asarray(split.images.reshape(split.images.shape[0], -1))
            x = preprocess(images, config.data.binarize, jax.random.fold_in(data_key, i + 1))
            out[name] = parallel.replicate(x, mesh)
    return out


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Trains the configured model, evaluates it, and leaves the run's files in `workdir`.

    Returns the summary (also written to `<workdir>/summary.json`). Raises ConfigError or
    data.DataError before writing anything when the config or the data is unusable.
    """
    if config.task == "pretrain":  # autoencoder, then a classifier on few labels
        from aevb import pretrain
        return pretrain.train_and_evaluate(config, workdir)
    if config.train.schedule == "layerwise":  # greedy: one layer at a time, then assembled
        from aevb import layerwise
        return layerwise.train_and_evaluate(config, workdir)
    datasets = load_and_check(config)
    write_or_check_config(config, workdir)
    mesh = parallel.make_mesh()

    num_pixels = datasets.num_pixels
    model = make_model(config.model, num_pixels)
    tx = make_optimizer(config.train)
    root = jax.random.key(config.train.seed)
    init_key, train_key, eval_key, picture_key = jax.random.split(root, 4)
    state = parallel.replicate(create_train_state(model, tx, init_key, num_pixels), mesh)
    num_params = sum(x.size for x in jax.tree.leaves(state.params))

    manager = checkpoint_manager(workdir, config.train)
    state, start_epoch = restore_or_keep(manager, state)
    writer = MetricWriter(workdir, resume_after_epoch=start_epoch)

    train_images = parallel.replicate(datasets.train.images.reshape(-1, num_pixels), mesh)
    eval_splits = eval_inputs(config, datasets, mesh)

    train_epoch = make_train_epoch(objectives.make(config, model, train=True), tx,
                                   config.train.batch_size, config.data.binarize, mesh)
    steps_per_epoch = train_images.shape[0] // config.train.batch_size
    num_epochs = config.train.num_epochs
    headline = "test_neg_elbo" if config.model.kind == "vae" else "test_mse"
    if start_epoch:
        _log(f"resuming {workdir} from the checkpoint of epoch {start_epoch}")
    devices = (f", {jax.device_count()} devices in {jax.process_count()} processes"
               if jax.device_count() > 1 else "")
    _log(f"{config.experiment}: {datasets.name} ({train_images.shape[0]} train, "
         f"{datasets.test.images.shape[0]} test), {num_params:,} parameters, "
         f"{num_epochs} epochs of {steps_per_epoch} steps{devices}")

    run_start = time.perf_counter()
    timed_examples, timed_seconds = 0, 0.0
    train_metrics: dict[str, float] = {}
    eval_metrics: dict[str, float] = {}
    for epoch in range(start_epoch + 1, num_epochs + 1):
        t0 = time.perf_counter()
        state, metrics = train_epoch(state, train_images, jax.random.fold_in(train_key, epoch))
        train_metrics = {f"train_{k}": float(v) for k, v in parallel.fetch(metrics).items()}
        step = int(parallel.fetch(state.step))
        seconds = time.perf_counter() - t0
        if epoch > start_epoch + 1 or num_epochs == start_epoch + 1:  # first one compiles
            timed_examples += steps_per_epoch * config.train.batch_size
            timed_seconds += seconds
        rate = (timed_examples / timed_seconds if timed_seconds
                else steps_per_epoch * config.train.batch_size / seconds)
        if not math.isfinite(train_metrics["train_loss"]):
            writer.write(epoch, step, train_metrics)
            raise NonFiniteLossError(
                f"epoch {epoch}: the training loss is {train_metrics['train_loss']}; stopped. "
                f"The last good checkpoint (epoch {manager.latest_step()}) is kept in "
                f"{workdir}/checkpoints. Try a smaller train.learning_rate.")
        eval_metrics = {}
        if epoch % config.eval.every_epochs == 0 or epoch == num_epochs:
            eval_metrics = evaluate.evaluate_splits(config, model, state.params, eval_splits,
                                                    jax.random.fold_in(eval_key, epoch), mesh)
        writer.write(epoch, step,
                     {**train_metrics, **eval_metrics, "examples_per_s": rate})
        if epoch % config.train.checkpoint_every_epochs == 0 or epoch == num_epochs:
            manager.save(epoch, args=ocp.args.StandardSave(state))
        eta = (num_epochs - epoch) * steps_per_epoch * config.train.batch_size / rate
        test_part = (f"  {headline.replace('_', ' ')} {eval_metrics[headline]:.4g}"
                     if headline in eval_metrics else "")
        _log(f"epoch {epoch:3d}/{num_epochs}  loss {train_metrics['train_loss']:.4g}"
             f"{test_part}  {rate:,.0f} ex/s  ETA {_format_eta(eta)}")
    manager.wait_until_finished()
    train_seconds = time.perf_counter() - run_start

    if not eval_metrics:  # resumed a finished run: evaluate the restored state
        eval_metrics = evaluate.evaluate_splits(config, model, state.params, eval_splits,
                                                jax.random.fold_in(eval_key, num_epochs), mesh)
    step = int(parallel.fetch(state.step))
    summary: dict[str, Any] = {"experiment": config.experiment, "dataset": datasets.name,
                               "epochs": num_epochs, "steps": step,
                               "num_params": num_params, **train_metrics, **eval_metrics}
    t0 = time.perf_counter()
    cache_key = (f"{datasets.name}/{config.data.dir or 'default'}/{config.data.binarize}/"
                 f"train={train_images.shape[0]}/val_seed={config.data.seed}")
    final = evaluate.final_metrics(
        config, model, state.params, eval_splits["test"],
        datasets.train.images.reshape(-1, num_pixels),
        jax.random.fold_in(eval_key, 10**6), cache_key, mesh)
    summary.update(final)
    summary["final_eval_seconds"] = time.perf_counter() - t0
    summary["train_seconds"] = train_seconds
    summary["examples_per_s"] = timed_examples / timed_seconds if timed_seconds else None
    if jax.process_index() == 0:
        plots.save_run_pictures(config, model, parallel.fetch(state.params),
                                parallel.fetch(eval_splits["test"]), datasets.image_shape,
                                picture_key, workdir)
    write_summary(workdir, summary, writer, num_epochs, step,
                  {**final, "train_seconds": train_seconds})
    writer.close()
    manager.close()
    _log("summary: " + "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                 for k, v in summary.items()))
    return summary
