"""Data parallelism: 8 devices give the numbers of 1 device; 2 processes those of 1 process.

One process with 8 (virtual CPU) devices trains the kinds below, one after another
(`python -m tests.test_parallel DATA_DIR ROOT`, XLA_FLAGS setting the device count); this
test process trains the same kinds on its one device meanwhile; the tests compare them kind
by kind. Between them the kinds run every regime, family and architecture on the mesh:
pretraining of a conv VAE (a strided and a pooled conv layer; trained on the IWAE bound
with its schedule and KL warm-up under the rbg generator, whose draws of a batch sharded
over 8 devices are 1 device's; its final log-likelihood estimate), then both classifiers
on its encoder; M1 (with the VampPrior) + M2 in both of its phases, M2 with its balanced
labeled batches; a
layer-wise stack of autoencoders in every phase and the fine-tuning; and a vectorized
sweep of 8 seeds whose trial axis the 8 devices split. The layer-wise stack reads the tiny
data as a folder of PNG files and the sweep as an .npz (`DATA_OF`), the others as IDX files.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

REPO = Path(__file__).resolve().parent.parent
# kind -> the (workdir, checkpoints) compared, besides summaries and loss curves: its own,
# or a sub-run's (M1 of M1 + M2, a workdir of its own)
CHECKPOINTS = {"m1m2": [("", "m2/checkpoints"), ("m1", "checkpoints")],
               "pretrain": [("", "classifier_scratch/checkpoints"),
                            ("", "classifier_pretrained/checkpoints")],
               "layerwise": [("", "checkpoints")]}
SEEDS = 8  # the vectorized sweep: one trial per device
SLOW_ROUNDS = "AEVB_TEST_ROUND_SECONDS"  # main(): each round lasts this much longer
# kind -> the form of the tiny data it reads (the same images): idx (the default) | npz | folder
DATA_OF = {"layerwise": "folder", "sweep": "npz"}


def tiny_config(kind: str, data: str, batch: int = 40):
    """The experiment of `kind`, shrunk to seconds on the tiny data (one epoch per phase).
    `data`: 'IDX_DIR,NPZ_FILE,FOLDER', the tiny data in its three forms."""
    name = {"m1m2": "semisupervised", "sweep": "vae"}.get(kind, kind)
    experiment = __import__(f"experiments.{name}", fromlist=["get_config"])
    config = experiment.get_config({"m1m2": "m1m2", "pretrain": "vae"}.get(kind, ""))
    where = dict(zip(("idx", "npz", "folder"), data.split(",")))
    form = DATA_OF.get(kind, "idx")
    config.data.dir, config.data.path = (where["idx"], "") if form == "idx" else ("", where[form])
    # 1,000 training images, 125 rows on each of 8 devices; M1 + M2's M1 trains on the 900
    # left after its 100 validation images (labels.hold_out), 113 rows on each, the last 4
    # of them padding (`parallel.shard_rows`), and selects by its probe
    config.data.num_validation = 0
    config.model.hidden_sizes = (64, 16) if kind == "layerwise" else (64,)
    config.model.latent_dim = 4
    config.train.num_epochs = 1
    config.train.finetune_epochs = 1 if kind == "layerwise" else 0
    config.train.batch_size = batch
    config.classifier.num_steps = 40
    config.classifier.eval_every_steps = 20
    config.classifier.batch_size = batch
    config.labels.num = 100
    config.eval.every_epochs = 1
    config.eval.batch_size = 40
    config.eval.iwae_k = 16
    config.eval.iwae_num_examples = 0
    config.eval.num_images = 4
    if kind == "pretrain":
        # A conv VAE (4 and 8 filters, 28 -> 14 by a stride of 2 -> 7 by 2x2 max-pooling)
        # trained on L_3 (the IWAE bound) with a cosine rate and a KL warm-up under the rbg
        # generator, with its final log-likelihood estimate; then both classifiers.
        config.model.architecture, config.model.hidden_sizes = "conv", ()
        config.model.conv.channels, config.model.conv.kernels = (4, 8), (3, 3)
        config.model.conv.strides, config.model.conv.pools = (2, 1), (1, 2)
        config.model.conv.paddings = ("same", "same")
        config.train.num_samples, config.train.objective = 3, "iwae"
        config.train.lr_schedule, config.train.kl_warmup_epochs = "cosine", 2
        config.train.prng_impl = "rbg"
        config.eval.iwae_num_examples = 40
    if kind in ("vae", "m1m2"):  # the VampPrior, K = 8 pseudo-inputs
        config.model.prior, config.model.num_pseudo_inputs = "vampprior", 8
    if kind == "vae":  # k = 3 samples, the bound L_3, a cosine rate and a KL warm-up
        config.train.num_epochs = 4
        config.train.num_samples, config.train.objective = 3, "iwae"
        config.train.lr_schedule, config.train.kl_warmup_epochs = "cosine", 2
        config.eval.iwae_num_examples = 40
    if kind == "m1m2":  # M2 on the M1 codes: 16 hidden units, 3 latents, 4 labels per class
        config.m2.hidden_sizes, config.m2.latent_dim, config.m2.num_epochs = (16,), 3, 1
        config.m2.batch_size = config.m2.labeled_batch_size = batch
    return config


def train_kind(kind: str, data: str, workdir: str, batch: int = 40) -> None:
    """Trains `kind` (or the sweep of SEEDS seeds) into `workdir`."""
    from aevb import regimes, sweeps

    config = tiny_config(kind, data, batch)
    if kind == "sweep":
        sweeps.run_sweep(config, sweeps.product({"train.seed": list(range(SEEDS))}), workdir)
    else:
        regimes.run(config, workdir)


def main(argv: list[str]) -> None:
    """DATA ROOT [KIND ...] [--distributed ADDRESS NUM_PROCESSES PROCESS_ID]: trains
    each kind (default: all, then a batch of 50 that 8 devices cannot split) under ROOT."""
    from aevb.config import checks
    from aevb.run import compile_cache, parallel

    if "--distributed" in argv:
        i = argv.index("--distributed")
        address, num, index = argv[i + 1:i + 4]
        parallel.initialize_distributed(address, int(num), int(index))
        argv = argv[:i]
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        compile_cache.enable(os.environ["JAX_COMPILATION_CACHE_DIR"])
    shard_rows = parallel.shard_rows

    def reporting(rows, first_row, num_rows, mesh):  # what this process holds of the set
        out = shard_rows(rows, first_row, num_rows, mesh)
        print(f"rows: process {jax.process_index()} holds {rows.shape[0]} of {num_rows} on its "
              f"host, {[s.data.shape[0] for s in out.addressable_shards]} on its devices",
              flush=True)
        return out
    parallel.shard_rows = reporting
    if os.environ.get(SLOW_ROUNDS):  # rounds that last long enough to be preempted in
        from aevb.training import loop

        progress = loop.Run._progress
        loop.Run._progress = lambda *a: (time.sleep(float(os.environ[SLOW_ROUNDS])),
                                         progress(*a))
    data, root, *kinds = argv
    for kind in kinds or [*CHECKPOINTS, "sweep"]:
        try:
            train_kind(kind, data, os.path.join(root, kind))
        except checks.Preempted as e:
            print(f"preempted: {e}", flush=True)
            sys.exit(75)
    if not kinds:
        try:
            train_kind("vae", data, os.path.join(root, "indivisible"), batch=50)
        except checks.ConfigError as e:
            print(f"error: {e}", flush=True)


def _start(data: str, root: Path, *args: str, devices: int = 1,
           round_seconds: float = 0.0) -> subprocess.Popen:
    """`main(DATA ROOT ARGS)` in a process of `devices` devices, beside this one (its
    own compilation cache off: JAX writes cache entries in place, so two processes that
    compile at once must not share a cache directory)."""
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}"
    env = {**os.environ, "XLA_FLAGS": flags.strip(), "JAX_COMPILATION_CACHE_DIR": "",
           SLOW_ROUNDS: str(round_seconds or "")}
    return subprocess.Popen([sys.executable, "-m", "tests.test_parallel", data,
                             str(root), *args], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    return out


def _results(workdir: Path, checkpoints: str = "checkpoints"):
    """(summary, every training loss logged, the last checkpoint's parameters by path)."""
    summary = json.loads((workdir / "summary.json").read_text())
    lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    curve = [v for r in lines if not r.get("final") for k, v in r.items()
             if k.endswith("train_loss")]
    assert curve
    ckpt_dir = workdir / checkpoints
    last = max(int(p.name) for p in ckpt_dir.iterdir() if p.name.isdigit())
    path = os.path.abspath(ckpt_dir / str(last) / "default")
    # Restore onto this process's one device, whatever topology saved it.
    checkpointer = ocp.StandardCheckpointer()
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                          checkpointer.metadata(path).item_metadata)
    restored = checkpointer.restore(path, target)
    restored = restored.get("state", restored)  # a phase that selects saves its selection too
    params = {jax.tree_util.keystr(path): np.asarray(leaf)
              for path, leaf in jax.tree_util.tree_leaves_with_path(restored["params"])}
    return summary, curve, params


def _assert_same(a, b, rtol=1e-4):
    (sa, ca, pa), (sb, cb, pb) = a, b
    np.testing.assert_allclose(ca, cb, rtol=rtol)
    for key in ("test_neg_elbo", "test_mse", "test_log_likelihood", "train_loss",
                "assembled_test_mse", "phase_1_test_mse", "pretrained_test_accuracy",
                "scratch_test_accuracy", "test_accuracy", "m1_test_neg_elbo"):
        if key in sa:
            assert sa[key] == pytest.approx(sb[key], rel=rtol), key
    assert pa.keys() == pb.keys()
    # Reductions over a sharded batch add in another order. Adam divides by sqrt(v), so for
    # weights of pixels that are almost always 0 (gradients ~1e-9) it turns those rounding
    # differences into steps of ~1e-4; all other weights agree to float32 precision.
    for name in pa:
        np.testing.assert_allclose(pa[name], pb[name], rtol=1e-3, atol=1e-3, err_msg=name)


@pytest.fixture
def tiny_data(tiny_idx_dir, tiny_npz, tiny_folder) -> str:
    """The tiny data in its three forms, as `tiny_config` takes them."""
    return f"{tiny_idx_dir},{tiny_npz},{tiny_folder}"


def test_eight_devices_match_one_device(tiny_data, tmp_path):
    """Every regime, family and architecture runs on the mesh: 8 devices give the 1-device
    numbers; 8 trials of a sweep, their trial axis split over the 8 devices, give the
    1-device numbers; a batch 8 devices cannot split is refused before anything is written.
    (One test, so that the two processes' runs are made once; compared kind by kind.)"""
    assert jax.device_count() == 1
    one, eight = tmp_path / "one", tmp_path / "eight"
    proc = _start(tiny_data, eight, devices=8)
    try:
        for kind in [*CHECKPOINTS, "sweep"]:
            train_kind(kind, tiny_data, str(one / kind))
    finally:
        out = _finish(proc)
    assert "8 devices in 1 processes" in out
    failures = []
    for kind, compared in CHECKPOINTS.items():
        for sub, checkpoints in compared:
            try:
                _assert_same(_results(one / kind / sub, checkpoints),
                             _results(eight / kind / sub, checkpoints))
            except AssertionError as e:
                failures.append(f"{kind} ({sub or '.'}/{checkpoints}): {e}")
    assert not failures, "\n\n".join(failures)

    assert f"{SEEDS} trials in one program" in out
    for seed in range(SEEDS):
        a = json.loads((one / "sweep" / f"seed={seed}" / "summary.json").read_text())
        b = json.loads((eight / "sweep" / f"seed={seed}" / "summary.json").read_text())
        for key in ("train_loss", "test_neg_elbo", "test_kl"):
            assert a[key] == pytest.approx(b[key], rel=1e-4), (seed, key)

    assert "train.batch_size=50" in out and "divisible by the number of devices (8)" in out
    assert not (eight / "indivisible").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one_process_also_preempted(tiny_data, tmp_path):
    """A VAE (the VampPrior, the IWAE bound, a cosine rate and a KL warm-up, its final
    log-likelihood estimate) trained by 2 processes of 1 device each, each holding half of the training
    images on its host and its device, gives the numbers of 1 process, also
    when only process 1 receives SIGTERM (after epoch 1 of 4): both stop after the same
    epoch (JAX's preemption sync point), save it and exit with status 75; the same command
    run again by both ends as the uninterrupted run."""
    def two_processes(round_seconds: float) -> list[subprocess.Popen]:
        address = f"127.0.0.1:{_free_port()}"
        return [_start(tiny_data, tmp_path / "two", "vae", "--distributed", address, "2",
                       str(i), round_seconds=round_seconds) for i in range(2)]

    procs = two_processes(0.5)  # epochs long enough for the signal to arrive in one
    try:
        for line in procs[0].stdout:
            if line.startswith("epoch   1/4"):
                procs[1].send_signal(signal.SIGTERM)
                break
        train_kind("vae", tiny_data, str(tmp_path / "one" / "vae"))
        outs = [p.communicate(timeout=600)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [75, 75], outs
    stops = {int(out.split("stopped after epoch ")[1].split(",")[0]) for out in outs}
    checkpoints = tmp_path / "two" / "vae" / "checkpoints"
    assert len(stops) == 1 and min(stops) < 4  # one epoch, before the last
    assert [int(p.name) for p in checkpoints.iterdir() if p.name.isdigit()] == [*stops]

    procs = two_processes(0.0)
    try:
        out0, out1 = (_finish(p) for p in procs)
    finally:
        for p in procs:
            p.kill()
    (stop,) = stops
    assert "2 devices in 2 processes" in out0 and f"checkpoint of epoch {stop}" in out0
    num_train = json.loads((tmp_path / "one" / "vae" / "data.json").read_text())["train"]
    for i, out in enumerate((out0, out1)):  # each process holds its half, host and device
        half = num_train // 2
        assert f"rows: process {i} holds {half} of {num_train} on its host, [{half}]" in out
    assert "summary:" in out0 and "summary:" not in out1  # process 0 reports
    _assert_same(_results(tmp_path / "one" / "vae"), _results(tmp_path / "two" / "vae"))


@pytest.mark.parametrize("kind, field", [
    ("vae", "train.batch_size"), ("layerwise", "train.batch_size"),
    ("pretrain", "train.batch_size"), ("pretrain", "classifier.batch_size")])
def test_every_regime_refuses_an_indivisible_batch_the_same_way(tiny_idx_dir, tmp_path,
                                                                 monkeypatch, kind, field):
    """The check lives at the config boundary every regime passes (as if 8 devices)."""
    from conftest import small_layerwise_config, small_pretrain_config, small_vae_config

    from aevb import regimes
    from aevb.config import checks

    config = {"vae": small_vae_config, "layerwise": small_layerwise_config,
              "pretrain": small_pretrain_config}[kind](tiny_idx_dir)
    config.train.batch_size = config.classifier.batch_size = 40
    section, name = field.split(".")
    config[section][name] = 44
    monkeypatch.setattr(jax, "device_count", lambda: 8)
    with pytest.raises(checks.ConfigError, match=rf"{field}=44 .*divisible by the number of "
                                                 r"devices \(8\)"):
        regimes.run(config, str(tmp_path / "never"))
    assert not (tmp_path / "never").exists()


if __name__ == "__main__":
    main(sys.argv[1:])
