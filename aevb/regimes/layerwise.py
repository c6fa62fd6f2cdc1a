"""Greedy layer-wise training of a stacked autoencoder: one layer at a time, then assembled.

The stack's encoder has widths w_0 = D, w_1, ..., w_n (`model.hidden_sizes`, then
`model.latent_dim`). Phase k + 1 (k = 0 .. n-1) trains a shallow autoencoder
w_k -> w_{k+1} -> w_k whose parameters are exactly layer k of the stack (the autoencoder
family's `layer_model`, `layer_params`, `with_layer`). Phase 1 reconstructs the input
pixels with the configured `model.reconstruction_loss`; phase k + 1 > 1 reconstructs the
codes h_k of the frozen layers below it, with mean squared error (real-valued activations,
not probabilities). Each shallow model uses the activations its layers have in the stack,
so once every phase is done the stack is already assembled: encoding composes the phases'
encoders and decoding their decoders in reverse. `train.finetune_epochs` of end-to-end
training may follow.

Regimes apply per phase, as in the stacked denoising autoencoder of Vincent et al. (2010)
and the stacked sparse autoencoder of the UFLDL notes: noise corrupts the phase's input
and the phase reconstructs the clean one; sparsity acts on the phase's code. Tied weights
tie each phase's decoder to its encoder, hence the stack's. Fine-tuning uses the joint
run's objective (noise on the pixels, sparsity on the top code only).

Phase k + 1 > 1 trains on the codes of the whole training set, computed once when the phase
starts (under `data.binarize=dynamic`, the codes of one binarization drawn with a fixed
key). Every phase and the fine-tuning run through the one loop (`aevb/training/loop.py`), on the
device mesh.

Run files, in `workdir`: `config.json`, `metrics.jsonl` (each line has `phase`: `phase_1`,
..., `assembled`, `finetune`, and metric names prefixed by it; `epoch` counts epochs over
all phases: phase k's epoch e is logged as (k-1) * train.num_epochs + e), `phase_<k>/
checkpoints` (phase k's shallow autoencoder), `checkpoints` (the assembled stack as round
0, then the fine-tuning epochs), `summary.json`, and the pictures of an autoencoder run.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import ml_collections
import optax
from jax.sharding import Mesh

from aevb import families
from aevb.config.checks import ConfigError
from aevb.data.pixels import preprocess
from aevb.evaluation.measures import EvalData, map_in_chunks, split_evaluations
from aevb.families.autoencoder import layer_model, layer_params, stack_widths, with_layer
from aevb.regimes.prepare import eval_data, load_and_check, train_rows
from aevb.run import checkpoints, files, parallel
from aevb.run.workdir import claim
from aevb.training import keys, loop
from aevb.training.epoch import make_train_epoch
from aevb.training.train_state import TrainState, make_optimizer, num_parameters

Params = dict[str, Any]


@functools.partial(jax.jit, static_argnames=("models", "chunk_size", "mesh"))
def _encode_through(models: tuple, params: tuple, x: jax.Array, chunk_size: int,
                    mesh: Mesh | None = None) -> jax.Array:
    def fn(xc, _):
        for model, p in zip(models, params):
            xc = model.apply(p, xc, method=model.encode)
        return {"code": xc}
    return map_in_chunks(fn, x, jax.random.key(0), chunk_size, mesh)["code"]


def encode_below(config: ml_collections.ConfigDict, num_pixels: int, stack_params: Params,
                 k: int, x: jax.Array, mesh: Mesh | None = None) -> jax.Array:
    """Codes h_k [N, w_k] of inputs x [N, D] through the stack's layers 0 .. k-1 (h_0 = x)."""
    models = tuple(layer_model(config.model, num_pixels, i) for i in range(k))
    params = tuple(layer_params(stack_params, i) for i in range(k))
    return _encode_through(models, params, x, config.eval.batch_size, mesh)


def layer_trainer(config: ml_collections.ConfigDict, k: int, stack_params: Params,
                  images: jax.Array, key: jax.Array, tx: optax.GradientTransformation,
                  mesh: Mesh | None = None, num_examples: int = 0
                  ) -> tuple[Any, TrainState, Callable[[TrainState, int, jax.Array], Any]]:
    """Phase k + 1: (its shallow model, its initial state, its compiled `run(state, e,
    epoch_key)`).

    images: the training set, uint8 [N, D] (its first `num_examples` rows, when it is split
    over devices by rows and padded; the codes are split likewise). Phase 1 trains on them
    as a joint run does
    (binarized per `data.binarize` at every step). Later phases train on the codes h_k of
    the layers below in `stack_params`, computed at the first epoch from the images
    binarized with fold_in(key, 0). Epoch e draws from the key the loop hands it
    (the phase's `keys` start from `key`, which the loop folds each epoch into).
    """
    num_pixels = images.shape[-1]
    family = families.get(config.model.kind)
    model = layer_model(config.model, num_pixels, k)
    state = TrainState.create(layer_params(stack_params, k), tx)
    if mesh is not None:
        state = parallel.replicate(state, mesh)
    objective = family.objective(config, model, train=True,
                                 reconstruction_loss=None if k == 0 else "mse")
    binarize = config.data.binarize if k == 0 else None
    epoch_fn = make_train_epoch(objective, tx, config.train.batch_size, binarize, mesh,
                                num_examples=num_examples)

    @functools.cache
    def inputs() -> jax.Array:
        if k == 0:
            return images
        x = preprocess(images, config.data.binarize, jax.random.fold_in(key, 0))
        codes = encode_below(config, num_pixels, stack_params, k, x, mesh)
        return codes if mesh is None else jax.device_put(codes, images.sharding)

    return model, state, lambda s, _, epoch_key: epoch_fn(s, inputs(), epoch_key)


def _checked_progress(done: Sequence[int], finetune_done: int | None, num_epochs: int,
                      workdir: str) -> None:
    """Refuses phase checkpoints that no run with this config can have left behind."""
    started = [d for d in done if d]
    consistent = (all(d == num_epochs for d in started[:-1])
                  and all(d <= num_epochs for d in done)
                  and done[:len(started)] == started
                  and (finetune_done is None or all(d == num_epochs for d in done)))
    if not consistent:
        raise ConfigError(
            f"workdir {workdir} holds layer-wise checkpoints at epochs {list(done)} (per phase) "
            f"that do not fit train.num_epochs={num_epochs}; resume with the train.num_epochs "
            "it was started with, or pass a new --workdir")


def _phases(config, run: loop.Run, stack_params: Params, images: jax.Array, num_train: int,
            data: EvalData, run_keys: keys.RunKeys, mesh: Mesh, workdir: str
            ) -> tuple[Params, dict]:
    """Phases 1..n, each through the loop: (the trained stack, phase metrics). Phase k + 1
    draws from fold_in(run_keys.train, k)."""
    family = families.get(config.model.kind)
    num_pixels, num_epochs = images.shape[-1], config.train.num_epochs
    widths = stack_widths(config.model, num_pixels)
    tx = make_optimizer(config.train, num_epochs * (num_train // config.train.batch_size))
    summary: dict[str, Any] = {}
    for k in range(len(widths) - 1):
        phase_key = jax.random.fold_in(run_keys.train, k)
        model, state, run_epoch = layer_trainer(config, k, stack_params, images, phase_key,
                                                tx, mesh, num_train)
        test_codes = encode_below(config, num_pixels, stack_params, k, data.splits["test"],
                                  mesh)
        # The phase's evaluation: its autoencoder's terms on the test split's codes
        # [N, width of the layer below].
        periodic, reported = split_evaluations(
            functools.partial(family.eval_terms, config, model), {"test": test_codes},
            config.eval.test_while_training, mesh)
        source = "the pixels" if k == 0 else f"the codes of layer {k}"
        run.log(f"phase {k + 1}/{len(widths) - 1}: {widths[k]}-{widths[k + 1]}-{widths[k]} "
                f"autoencoder on {source}")
        result = run.train(loop.Phase(
            state=state, run=run_epoch, num_rounds=num_epochs,
            evaluate=periodic, evaluate_reported=reported,
            checkpoint_dir=files.checkpoint_dir(workdir, f"phase_{k + 1}"),
            keys=(phase_key, run_keys.eval), cadence=loop.cadence(config),
            display=loop.Display(name=f"phase_{k + 1}", headline=family.headline,
                                 examples_per_round=num_train // config.train.batch_size
                                 * config.train.batch_size)))
        stack_params = with_layer(stack_params, k, result.state.params)
        summary.update({f"phase_{k + 1}_{name}": v for name, v in result.eval[0].items()})
        summary[f"phase_{k + 1}_seconds"] = result.seconds
    return stack_params, summary


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Trains the configured stack greedily, layer by layer, assembles it, optionally
    fine-tunes it end to end, evaluates it, and leaves the run's files in `workdir`.

    `train.num_epochs` is the number of epochs of every phase. Returns the summary (also in
    `<workdir>/summary.json`): the final stack's test metrics as a joint run reports them,
    `phase_<k>_test_mse` (each phase's error on its own test inputs), `assembled_test_mse`
    (the stack before fine-tuning) and the timings.
    """
    datasets = load_and_check(config)
    claim(config, workdir, datasets.record())
    mesh = parallel.make_mesh()
    family = families.get(config.model.kind)
    num_pixels = datasets.num_pixels
    widths = stack_widths(config.model, num_pixels)
    n, num_epochs = len(widths) - 1, config.train.num_epochs
    finetune_epochs = config.train.finetune_epochs
    stack = family.make_model(config.model, datasets.image_shape)
    run_keys = keys.run_keys(config.train.seed, config.train.prng_impl)
    # The same initial stack as a joint run's.
    stack_params = family.init_params(stack, run_keys.init, datasets.image_shape)
    num_params = num_parameters(stack_params)

    finetune_dir = files.checkpoint_dir(workdir)
    done = [checkpoints.saved_round(files.checkpoint_dir(workdir, f"phase_{k + 1}"))
            or 0 for k in range(n)]
    finetune_done = checkpoints.saved_round(finetune_dir)
    _checked_progress(done, finetune_done, num_epochs, workdir)
    # Log positions: phase k's epoch e at k * E + e, the assembled stack at n * E + 1,
    # fine-tuning epoch f at n * E + 1 + f.
    run = loop.Run([workdir])
    images = train_rows(datasets, mesh)
    data = eval_data(config, datasets, mesh)
    steps_per_epoch = datasets.num_train // config.train.batch_size
    run.log(f"{config.experiment}: {datasets.name} ({datasets.num_train} train, "
            f"{datasets.test.images.shape[0]} test), stack {'-'.join(map(str, widths))}, "
            f"{num_params:,} parameters; {n} phases of {num_epochs} epochs of "
            f"{steps_per_epoch} steps, then {finetune_epochs} epochs end to end"
            f"{parallel.describe_devices()}")
    stack_params, summary = _phases(config, run, stack_params, images, datasets.num_train,
                                    data, run_keys, mesh, workdir)

    # The assembled stack, every layer as its phase left it; then fine-tuning end to end.
    periodic, reported = split_evaluations(functools.partial(family.eval_terms, config, stack),
                                           data.splits, config.eval.test_while_training, mesh)
    evaluate = reported or periodic  # every split
    # Evaluated with the key of its line, the first after the phases'.
    assembled = evaluate(stack_params, jax.random.fold_in(run_keys.eval, run.epoch + 1))
    summary.update({f"assembled_{name}": v for name, v in assembled.items()})
    run.log(f"assembled {'-'.join(map(str, widths))} stack: test mse "
            f"{assembled['test_mse']:.4g}")
    tx = make_optimizer(config.train, finetune_epochs * steps_per_epoch)
    finetune_epoch = make_train_epoch(family.objective(config, stack, train=True), tx,
                                      config.train.batch_size, config.data.binarize, mesh,
                                      num_examples=datasets.num_train)
    result = run.train(loop.Phase(
        state=parallel.replicate(TrainState.create(stack_params, tx), mesh),
        run=lambda s, _, key: finetune_epoch(s, images, key),
        num_rounds=finetune_epochs, evaluate=periodic, evaluate_reported=reported,
        checkpoint_dir=finetune_dir,
        keys=(jax.random.fold_in(run_keys.train, n), run_keys.eval),
        cadence=loop.cadence(config),
        display=loop.Display(name="finetune", headline=family.headline,
                             examples_per_round=steps_per_epoch * config.train.batch_size),
        initial=("assembled", lambda _: assembled)))
    params = result.state.params
    train_seconds = sum(summary[f"phase_{k + 1}_seconds"] for k in range(n)) + result.seconds

    with run.timed("evaluation"):
        final = family.final_metrics(config, stack, params, data, run_keys.final, mesh)
    summary = {"experiment": config.experiment, "dataset": datasets.name,
               "schedule": "layerwise", "epochs": num_epochs, "phases": n,
               "finetune_epochs": finetune_epochs, "steps": run.step,
               "num_params": num_params, **summary, **result.eval[0], **final,
               "train_seconds": train_seconds}
    draw = lambda: family.pictures(config, stack, parallel.fetch(params),
                                   parallel.fetch(data.splits["test"]), data.image_shape,
                                   run_keys.pictures, workdir)
    run.finish([summary], [{**final, "train_seconds": train_seconds}], pictures=[draw])
    return summary
