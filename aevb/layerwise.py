"""Greedy layer-wise training of a stacked autoencoder: one layer at a time, then assembled.

The stack's encoder has widths w_0 = D, w_1, ..., w_n (`model.hidden_sizes`, then
`model.latent_dim`). Phase k + 1 (k = 0 .. n-1) trains a shallow autoencoder
w_k -> w_{k+1} -> w_k whose parameters are exactly layer k of the stack: its encoder is
the stack's encoder layer k (`encoder_kernel_k`, `encoder_bias_k`), its decoder the stack's
mirror decoder layer n-1-k. Phase 1 reconstructs the input pixels with the configured
`model.reconstruction_loss`; phase k + 1 > 1 reconstructs the codes h_k of the frozen layers
below it, with mean squared error (the codes are real-valued activations, not
probabilities, so squared error, a Gaussian likelihood, is the natural score). Each shallow
model uses the activations its layers have in the stack, so once every phase is done the
stack is already assembled: encoding composes the phases' encoders and decoding composes
their decoders in reverse. `train.finetune_epochs` of end-to-end training may follow.

Regimes apply per phase, as in the stacked denoising autoencoder of Vincent et al. (2010)
and the stacked sparse autoencoder of the UFLDL notes: noise corrupts the phase's input
(the clean codes of the layers below) and the phase reconstructs the clean one; the
sparsity penalty acts on the phase's code (every hidden layer of the stack is made sparse).
Tied weights tie each phase's decoder to its encoder, hence the stack's. Fine-tuning uses
the joint run's objective (noise on the pixels, sparsity on the top code only).

Phase k + 1 > 1 trains on the codes of the whole training set, computed once when the phase
starts (the frozen layers never change), so each phase costs only its own two layers
(under `data.binarize=dynamic`, the codes of one binarization drawn with a fixed key).

Run files, in `workdir`: `config.json`, `metrics.jsonl` (each line has `phase`: `phase_1`,
..., `assembled`, `finetune`, and metric names prefixed by it; `epoch` counts epochs over
all phases: phase k's epoch e is logged as (k-1) * train.num_epochs + e), `phase_<k>/
checkpoints` (phase k's shallow autoencoder, every epoch), `checkpoints` (the assembled
stack as step 0, then every fine-tuning epoch), `summary.json`, and the pictures of an
autoencoder run. An interrupted run resumes in the phase, and at the epoch, where it
stopped.
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp

from aevb import configs, evaluate, models, objectives, plots, train
from aevb import data as data_lib
from aevb.metrics import MetricWriter

Params = dict[str, Any]
EpochCallback = Callable[[int, train.TrainState, dict[str, float]], None]


# ----------------------------------------------------------------------------- the layers

def stack_widths(model_config: ml_collections.ConfigDict, num_pixels: int) -> tuple[int, ...]:
    """(w_0, ..., w_n) = (D, *model.hidden_sizes, model.latent_dim): the encoder's widths."""
    return (num_pixels, *model_config.hidden_sizes, model_config.latent_dim)


def phase_model(model_config: ml_collections.ConfigDict, num_pixels: int,
                k: int) -> models.Autoencoder:
    """The shallow autoencoder of phase k + 1: w_k -> w_{k+1} -> w_k, layer k of the stack.

    Its code uses the activation of the stack's encoder layer k (`model.code_activation`
    for the top layer, `model.activation` below it); its output the activation of the
    stack's mirror decoder layer (`model.output_activation` for the bottom layer, which
    produces pixels, `model.activation` above it, which produces the codes of layer k - 1).
    """
    widths = stack_widths(model_config, num_pixels)
    n = len(widths) - 1
    return models.Autoencoder(
        hidden_sizes=(), code_dim=widths[k + 1], output_dim=widths[k],
        activation=model_config.activation,
        code_activation=model_config.code_activation if k == n - 1 else model_config.activation,
        output_activation=model_config.output_activation if k == 0 else model_config.activation,
        tied_weights=model_config.tied_weights)


def _layer_names(k: int, n: int, tied: bool) -> dict[str, str]:
    """Phase k + 1's parameter names -> the names of the same arrays in an n-layer stack."""
    names = {"encoder_kernel_0": f"encoder_kernel_{k}", "encoder_bias_0": f"encoder_bias_{k}",
             "decoder_bias_0": f"decoder_bias_{n - 1 - k}"}
    if not tied:
        names["decoder_kernel_0"] = f"decoder_kernel_{n - 1 - k}"
    return names


def num_layers(stack_params: Params) -> int:
    """n, the number of encoder layers of a stack's parameters."""
    return sum(name.startswith("encoder_kernel_") for name in stack_params["params"])


def _is_tied(stack_params: Params) -> bool:
    return not any(name.startswith("decoder_kernel_") for name in stack_params["params"])


def layer_params(stack_params: Params, k: int) -> Params:
    """Layer k of a stack's parameters as the parameters of phase k + 1's shallow model."""
    names = _layer_names(k, num_layers(stack_params), _is_tied(stack_params))
    return {"params": {short: stack_params["params"][full] for short, full in names.items()}}


def with_layer(stack_params: Params, k: int, phase_params: Params) -> Params:
    """A copy of the stack's parameters with layer k replaced by a phase's; the rest shared."""
    names = _layer_names(k, num_layers(stack_params), _is_tied(stack_params))
    new = dict(stack_params["params"])
    for short, full in names.items():
        new[full] = phase_params["params"][short]
    return {**stack_params, "params": new}


def encode_below(config: ml_collections.ConfigDict, num_pixels: int, stack_params: Params,
                 k: int, x: jax.Array) -> jax.Array:
    """Codes h_k [N, w_k] of inputs x [N, D] through the stack's encoder layers 0 .. k-1.

    Composes the phases' encoders (h_0 = x), in chunks of `eval.batch_size`.
    """
    phase_models = tuple(phase_model(config.model, num_pixels, i) for i in range(k))
    lower = tuple(layer_params(stack_params, i) for i in range(k))
    return _encode_through(phase_models, lower, x, config.eval.batch_size)


@functools.partial(jax.jit, static_argnames=("phase_models", "chunk_size"))
def _encode_through(phase_models: tuple[models.Autoencoder, ...], params: tuple[Params, ...],
                    x: jax.Array, chunk_size: int) -> jax.Array:
    def fn(xc, _):
        for model, p in zip(phase_models, params):
            xc = model.apply(p, xc, method=model.encode)
        return {"code": xc}
    return evaluate.map_in_chunks(fn, x, jax.random.key(0), chunk_size)["code"]


# ----------------------------------------------------------------------------- one phase

def phase_objective(config: ml_collections.ConfigDict, model: models.Autoencoder,
                    k: int) -> objectives.Objective:
    """Phase k + 1's per-example objective `fn(params, x [B, w_k], key) -> {loss, recon, ...}`.

    Phase 1 scores pixels with `model.reconstruction_loss`; later phases score codes with
    MSE. The noise regime corrupts the phase's input; the sparsity regime penalises its code.
    """
    return functools.partial(
        objectives.autoencoder_terms, model,
        reconstruction_loss=config.model.reconstruction_loss if k == 0 else "mse",
        noise_kind=config.noise.kind, noise_std=config.noise.std, noise_rate=config.noise.rate,
        sparsity_kind=config.sparsity.kind, sparsity_target=config.sparsity.target,
        sparsity_weight=config.sparsity.weight)


def initial_phase_state(stack_params: Params, k: int,
                        tx: optax.GradientTransformation) -> train.TrainState:
    """Phase k + 1 starts from the stack's layer k and a fresh optimizer state."""
    params = layer_params(stack_params, k)
    return train.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                            opt_state=tx.init(params))


def fit_layer(config: ml_collections.ConfigDict, k: int, stack_params: Params,
              images: jax.Array, key: jax.Array, num_epochs: int,
              state: train.TrainState | None = None, start_epoch: int = 0,
              on_epoch: EpochCallback | None = None) -> tuple[Params, train.TrainState]:
    """Phase k + 1: trains layer k of the stack on the codes of the frozen layers below.

    images: the training set, uint8 [N, D]. Phase 1 trains on them as a joint run does
    (`train.make_train_epoch`, binarized per `data.binarize` at every step). Later phases
    train on the codes h_k of layers 0 .. k-1 of `stack_params`, computed once from the
    images preprocessed with a fixed key. Epochs start_epoch + 1 .. num_epochs run from
    `state` (a restored phase state; None: layer k of the stack, fresh optimizer), epoch e
    with key fold_in(key, e); `on_epoch(e, state, metrics)` follows each (logging,
    checkpoints). Returns the stack with layer k replaced, every other layer untouched,
    and the phase's final state.
    """
    num_pixels = images.shape[-1]
    model = phase_model(config.model, num_pixels, k)
    tx = train.make_optimizer(config.train)
    if state is None:
        state = initial_phase_state(stack_params, k, tx)
    objective = phase_objective(config, model, k)
    if start_epoch < num_epochs:
        if k == 0:
            inputs = images
            epoch_fn = train.make_train_epoch(objective, tx, config.train.batch_size,
                                              config.data.binarize)
        else:
            x = train.preprocess(images, config.data.binarize, jax.random.fold_in(key, 0))
            inputs = encode_below(config, num_pixels, stack_params, k, x)
            epoch_fn = train.make_train_epoch(objective, tx, config.train.batch_size, None)
        for epoch in range(start_epoch + 1, num_epochs + 1):
            state, metrics = epoch_fn(state, inputs, jax.random.fold_in(key, epoch))
            if on_epoch is not None:
                on_epoch(epoch, state, {name: float(v) for name, v in metrics.items()})
    return with_layer(stack_params, k, state.params), state


# ----------------------------------------------------------------------------- the run

def initial_stack_params(config: ml_collections.ConfigDict, num_pixels: int) -> Params:
    """The stack's initial parameters, the ones a joint run with this config starts from.

    Phase k + 1 starts from their layer k, so both schedules start from the same numbers.
    """
    init_key = jax.random.split(jax.random.key(config.train.seed), 4)[0]
    model = train.make_model(config.model, num_pixels)
    return train.create_train_state(model, train.make_optimizer(config.train), init_key,
                                    num_pixels).params


def phase_manager(workdir: str, k: int, train_config: ml_collections.ConfigDict
                  ) -> ocp.CheckpointManager:
    """Orbax manager of `<workdir>/phase_<k+1>/checkpoints`: phase k + 1's state per epoch."""
    return train.checkpoint_manager(os.path.join(workdir, f"phase_{k + 1}"), train_config)


def _checked_progress(done: Sequence[int], finetune_done: int | None, num_epochs: int,
                      workdir: str) -> None:
    """Refuses phase checkpoints that no run with this config can have left behind."""
    started = [d for d in done if d]
    consistent = (all(d == num_epochs for d in started[:-1])
                  and all(d <= num_epochs for d in done)
                  and done[:len(started)] == started
                  and (finetune_done is None or all(d == num_epochs for d in done)))
    if not consistent:
        raise configs.ConfigError(
            f"workdir {workdir} holds layer-wise checkpoints at epochs {list(done)} (per phase) "
            f"that do not fit train.num_epochs={num_epochs}; resume with the train.num_epochs "
            "it was started with, or pass a new --workdir")


def _eval_inputs(split: data_lib.Split, binarize: str, key: jax.Array) -> jax.Array:
    """A split as model inputs: float32 [N, D], binarized once with a fixed key."""
    return train.preprocess(jnp.asarray(split.images.reshape(split.images.shape[0], -1)),
                            binarize, key)


def _phase_eval(model: models.Autoencoder, codes: jax.Array, key: jax.Array, chunk_size: int,
                params: Params, log_epoch: int) -> dict[str, float]:
    """A phase's reconstruction error on its own test inputs (codes [N, w_k]): `test_mse`, ..."""
    terms = evaluate.reconstruction_terms(model, params, codes,
                                          jax.random.fold_in(key, log_epoch), chunk_size)
    terms.pop("code")
    return {f"test_{name}": float(jnp.mean(v)) for name, v in terms.items()}


def _stack_eval(config: ml_collections.ConfigDict, stack: models.Autoencoder,
                splits: dict[str, jax.Array], key: jax.Array, params: Params,
                log_epoch: int) -> dict[str, float]:
    """The whole stack's periodic evaluation, as a joint run's: `test_mse`, ..."""
    return evaluate.evaluate_splits(config, stack, params, splits,
                                    jax.random.fold_in(key, log_epoch))


def _prefixed(phase: str, metrics: dict[str, Any]) -> dict[str, Any]:
    return {"phase": phase, **{f"{phase}/{name}": v for name, v in metrics.items()}}


def epoch_callback(config: ml_collections.ConfigDict, writer: MetricWriter, phase: str,
                   log_offset: int, step_offset: int, num_epochs: int,
                   manager: ocp.CheckpointManager, examples_per_epoch: int,
                   evaluate_fn: Callable[[Params, int], dict[str, float]]) -> EpochCallback:
    """`on_epoch(epoch, state, train metrics)` of one phase of a run.

    Stops on a non-finite loss (train.NonFiniteLossError; the last good checkpoint stays),
    evaluates every `eval.every_epochs` and at the phase's last epoch with
    `evaluate_fn(params, log_epoch)`, writes one metrics line (names prefixed by `phase`;
    epoch log_offset + epoch, step step_offset + the phase's step), checkpoints every
    `train.checkpoint_every_epochs` and at the last epoch, and prints one progress line.
    """
    clock = [time.perf_counter()]

    def on_epoch(epoch: int, state: train.TrainState, metrics: dict[str, float]) -> None:
        seconds = time.perf_counter() - clock[0]
        log_epoch, step = log_offset + epoch, step_offset + int(state.step)
        train_metrics = {f"train_{name}": v for name, v in metrics.items()}
        if not math.isfinite(metrics["loss"]):
            writer.write(log_epoch, step, _prefixed(phase, train_metrics))
            raise train.NonFiniteLossError(
                f"{phase} epoch {epoch}: the training loss is {metrics['loss']}; stopped. "
                f"The last good checkpoint (epoch {manager.latest_step()}) is kept. "
                "Try a smaller train.learning_rate.")
        eval_metrics = {}
        if epoch % config.eval.every_epochs == 0 or epoch == num_epochs:
            eval_metrics = evaluate_fn(state.params, log_epoch)
        rate = examples_per_epoch / seconds
        writer.write(log_epoch, step, _prefixed(phase, {**train_metrics, **eval_metrics,
                                                        "examples_per_s": rate}))
        if epoch % config.train.checkpoint_every_epochs == 0 or epoch == num_epochs:
            manager.save(epoch, args=ocp.args.StandardSave(state))
        test_part = (f"  test mse {eval_metrics['test_mse']:.4g}"
                     if "test_mse" in eval_metrics else "")
        print(f"epoch {epoch:3d}/{num_epochs}  loss {metrics['loss']:.4g}{test_part}  "
              f"{rate:,.0f} ex/s  ({seconds:.1f} s)", flush=True)
        clock[0] = time.perf_counter()

    return on_epoch


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Trains the configured stack greedily, layer by layer, assembles it, optionally
    fine-tunes it end to end, evaluates it, and leaves the run's files in `workdir`.

    `train.num_epochs` is the number of epochs of every phase. Returns the summary (also in
    `<workdir>/summary.json`): the final stack's test metrics as a joint run reports them,
    `phase_<k>_test_mse` (each phase's error on its own test inputs), `assembled_test_mse`
    (the stack before fine-tuning) and the timings.
    """
    configs.validate(config)
    datasets = data_lib.load(config.data)
    configs.validate_against_data(config, datasets.train.images.shape[0])
    train.write_or_check_config(config, workdir)

    num_pixels = datasets.num_pixels
    widths = stack_widths(config.model, num_pixels)
    n = len(widths) - 1
    num_epochs, finetune_epochs = config.train.num_epochs, config.train.finetune_epochs
    stack = train.make_model(config.model, num_pixels)
    tx = train.make_optimizer(config.train)
    _, train_key, eval_key, picture_key = jax.random.split(jax.random.key(config.train.seed), 4)
    stack_params = initial_stack_params(config, num_pixels)
    num_params = sum(x.size for x in jax.tree.leaves(stack_params))

    managers = [phase_manager(workdir, k, config.train) for k in range(n)]
    finetune_manager = train.checkpoint_manager(workdir, config.train)
    done = [m.latest_step() or 0 for m in managers]
    finetune_done = finetune_manager.latest_step()
    _checked_progress(done, finetune_done, num_epochs, workdir)
    # Log positions: phase k's epoch e at k * E + e, the assembled stack at n * E + 1,
    # fine-tuning epoch f at n * E + 1 + f.
    resume_after = sum(done) + (0 if finetune_done is None else 1 + finetune_done)
    writer = MetricWriter(workdir, resume_after_epoch=resume_after)

    train_images = jnp.asarray(datasets.train.images.reshape(-1, num_pixels))
    data_key = jax.random.key(config.data.seed)
    test_x = _eval_inputs(datasets.test, config.data.binarize, jax.random.fold_in(data_key, 1))
    eval_splits = {"test": test_x}
    if datasets.validation is not None:
        eval_splits["validation"] = _eval_inputs(datasets.validation, config.data.binarize,
                                                 jax.random.fold_in(data_key, 2))
    steps_per_epoch = train_images.shape[0] // config.train.batch_size
    examples_per_epoch = steps_per_epoch * config.train.batch_size
    if resume_after:
        print(f"resuming {workdir} after {resume_after} logged epochs", flush=True)
    print(f"{config.experiment}: {datasets.name} ({train_images.shape[0]} train, "
          f"{datasets.test.images.shape[0]} test), stack {'-'.join(map(str, widths))}, "
          f"{num_params:,} parameters; {n} phases of {num_epochs} epochs of {steps_per_epoch} "
          f"steps, then {finetune_epochs} epochs end to end", flush=True)

    summary: dict[str, Any] = {}
    run_start = time.perf_counter()
    total_steps = 0

    # Phases 1..n: phase k + 1 trains layer k on the codes of the layers below.
    for k in range(n):
        model_k = phase_model(config.model, num_pixels, k)
        test_codes = encode_below(config, num_pixels, stack_params, k, test_x)
        evaluate_phase = functools.partial(_phase_eval, model_k, test_codes, eval_key,
                                           config.eval.batch_size)
        source = "the pixels" if k == 0 else f"the codes of layer {k}"
        print(f"phase {k + 1}/{n}: {widths[k]}-{widths[k + 1]}-{widths[k]} autoencoder "
              f"on {source}", flush=True)
        state, start = train.restore_or_keep(managers[k],
                                             initial_phase_state(stack_params, k, tx))
        t0 = time.perf_counter()
        on_epoch = epoch_callback(config, writer, f"phase_{k + 1}", k * num_epochs,
                                  total_steps, num_epochs, managers[k], examples_per_epoch,
                                  evaluate_phase)
        stack_params, state = fit_layer(config, k, stack_params, train_images,
                                        jax.random.fold_in(train_key, k), num_epochs,
                                        state, start, on_epoch)
        managers[k].wait_until_finished()
        total_steps += int(state.step)
        phase_metrics = evaluate_phase(state.params, (k + 1) * num_epochs)
        summary.update({f"phase_{k + 1}_{name}": v for name, v in phase_metrics.items()})
        summary[f"phase_{k + 1}_seconds"] = time.perf_counter() - t0

    # The assembled stack: every layer as its phase left it.
    evaluate_stack = functools.partial(_stack_eval, config, stack, eval_splits, eval_key)
    assembled = evaluate_stack(stack_params, n * num_epochs + 1)
    summary.update({f"assembled_{name}": v for name, v in assembled.items()})
    print(f"assembled {'-'.join(map(str, widths))} stack: test mse "
          f"{assembled['test_mse']:.4g}", flush=True)
    state = train.TrainState(step=jnp.zeros((), jnp.int32), params=stack_params,
                             opt_state=tx.init(stack_params))
    if finetune_done is None:
        finetune_manager.save(0, args=ocp.args.StandardSave(state))
        writer.write(n * num_epochs + 1, total_steps, _prefixed("assembled", assembled))
        finetune_done = 0
    else:
        state, _ = train.restore_or_keep(finetune_manager, state)

    # Fine-tuning: the joint run's epoch, starting from the assembled stack.
    if finetune_done < finetune_epochs:
        print(f"fine-tuning the stack end to end for {finetune_epochs} epochs", flush=True)
        finetune_epoch = train.make_train_epoch(objectives.make(config, stack, train=True), tx,
                                                config.train.batch_size, config.data.binarize)
        on_epoch = epoch_callback(config, writer, "finetune", n * num_epochs + 1, total_steps,
                                  finetune_epochs, finetune_manager, examples_per_epoch,
                                  evaluate_stack)
        finetune_key = jax.random.fold_in(train_key, n)
        for epoch in range(finetune_done + 1, finetune_epochs + 1):
            state, metrics = finetune_epoch(state, train_images,
                                            jax.random.fold_in(finetune_key, epoch))
            on_epoch(epoch, state, {name: float(v) for name, v in metrics.items()})
    finetune_manager.wait_until_finished()
    total_steps += int(state.step)
    stack_params = state.params
    train_seconds = time.perf_counter() - run_start

    eval_metrics = evaluate_stack(stack_params, 10**6 - 1)
    cache_key = (f"{datasets.name}/{config.data.dir or 'default'}/{config.data.binarize}/"
                 f"train={train_images.shape[0]}/val_seed={config.data.seed}")
    final = evaluate.final_metrics(config, stack, stack_params, test_x,
                                   np.asarray(train_images),
                                   jax.random.fold_in(eval_key, 10**6), cache_key)
    summary = {"experiment": config.experiment, "dataset": datasets.name,
               "schedule": "layerwise", "epochs": num_epochs, "phases": n,
               "finetune_epochs": finetune_epochs, "steps": total_steps,
               "num_params": num_params,
               **summary, **eval_metrics, **final, "train_seconds": train_seconds}
    last_log = n * num_epochs + 1 + finetune_epochs
    if jax.process_index() == 0:
        plots.save_run_pictures(config, stack, stack_params, test_x, datasets.image_shape,
                                picture_key, workdir)
    train.write_summary(workdir, summary, writer, last_log, total_steps,
                        {**final, "train_seconds": train_seconds})
    writer.close()
    for manager in (*managers, finetune_manager):
        manager.close()
    print("summary: " + "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                  for k, v in summary.items()), flush=True)
    return summary
