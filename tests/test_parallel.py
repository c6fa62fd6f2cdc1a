"""Data parallelism: 8 devices give the numbers of 1 device; 2 processes those of 1 process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(tiny_idx_dir, workdir, *extra, devices=1, background=False, batch=40,
         kind="vae"):
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    cmd = [sys.executable, "tests/run_tiny.py", f"--kind={kind}", f"--data_dir={tiny_idx_dir}",
           f"--workdir={workdir}", f"--batch_size={batch}", *extra]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    if background:
        return proc
    out, _ = proc.communicate(timeout=300)
    return proc.returncode, out


def _finish(*procs: subprocess.Popen) -> list[tuple[int, str]]:
    """(return code, output) of processes started side by side (the machine has 2 cores)."""
    outs = [p.communicate(timeout=300)[0] for p in procs]
    return [(p.returncode, out) for p, out in zip(procs, outs)]


def _results(workdir, checkpoints="checkpoints"):
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


@pytest.mark.parametrize("kind, checkpoints", [
    ("vae", "checkpoints"), ("iwae", "checkpoints"), ("stacked", "checkpoints"),
    ("layerwise", "checkpoints"), ("convvae", "checkpoints"),
    ("pretrain", "classifier_scratch/checkpoints"), ("m1m2", "m2/checkpoints")])
def test_eight_devices_match_one_device(tiny_idx_dir, tmp_path, kind, checkpoints):
    """Every regime and architecture runs on the mesh: 8 devices give the 1-device numbers
    (a layer-wise run in every phase and the fine-tuning; pretraining in phase 1 and both
    classifiers; a conv VAE, with a strided and a pooled conv layer; M1 + M2 in both of its
    phases, M2 with its balanced labeled batches)."""
    (rc1, out1), (rc8, out8) = _finish(
        _run(tiny_idx_dir, tmp_path / "one", kind=kind, background=True),
        _run(tiny_idx_dir, tmp_path / "eight", devices=8, kind=kind, background=True))
    assert rc1 == 0, out1
    assert rc8 == 0, out8
    assert "8 devices in 1 processes" in out8
    _assert_same(_results(tmp_path / "one", checkpoints),
                 _results(tmp_path / "eight", checkpoints))
    if kind == "pretrain":
        _assert_same(_results(tmp_path / "one", "classifier_pretrained/checkpoints"),
                     _results(tmp_path / "eight", "classifier_pretrained/checkpoints"))
    if kind == "m1m2":
        _assert_same(_results(tmp_path / "one" / "m1"), _results(tmp_path / "eight" / "m1"))


def test_batch_not_divisible_by_devices_fails_before_writing(tiny_idx_dir, tmp_path):
    rc, out = _run(tiny_idx_dir, tmp_path / "never", devices=8, batch=50)
    assert rc == 2
    assert "train.batch_size=50" in out and "divisible by the number of devices (8)" in out
    assert not (tmp_path / "never").exists()


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one_process(tiny_idx_dir, tmp_path):
    port = _free_port()
    flags = ["--distributed", f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2"]
    procs = [_run(tiny_idx_dir, tmp_path / "two", *flags, f"--process_id={i}",
                  background=True) for i in range(2)]
    (rc0, out0), (rc1, out1), (rc, out) = _finish(
        *procs, _run(tiny_idx_dir, tmp_path / "one", background=True))
    assert [rc0, rc1] == [0, 0], [out0, out1]
    assert "2 devices in 2 processes" in out0
    assert "summary:" in out0 and "summary:" not in out1  # process 0 reports
    assert rc == 0, out
    _assert_same(_results(tmp_path / "one"), _results(tmp_path / "two"))


def test_vectorized_sweep_on_four_devices_matches_one_device(tiny_idx_dir, tmp_path):
    """4 trials, their trial axis split over 4 devices, give the 1-device numbers."""
    (rc1, out1), (rc4, out4) = _finish(
        _run(tiny_idx_dir, tmp_path / "one", "--seeds=4", background=True),
        _run(tiny_idx_dir, tmp_path / "four", "--seeds=4", devices=4, background=True))
    assert rc1 == 0, out1
    assert rc4 == 0, out4
    assert "4 trials in one program" in out4
    for seed in range(4):
        a = json.loads((tmp_path / "one" / f"seed={seed}" / "summary.json").read_text())
        b = json.loads((tmp_path / "four" / f"seed={seed}" / "summary.json").read_text())
        for key in ("train_loss", "test_neg_elbo", "test_log_likelihood"):
            assert a[key] == pytest.approx(b[key], rel=1e-4), (seed, key)


def test_rbg_keeps_eight_devices_equal_to_one(tiny_idx_dir, tmp_path):
    """train.prng_impl=rbg: the batch sharded over 8 devices draws the same binarization
    and noise as 1 device, so the numbers agree as with threefry (unsafe_rbg, the same
    generator with another key derivation, did too when tried)."""
    flag = "--prng_impl=rbg"
    (rc1, out1), (rc8, out8) = _finish(
        _run(tiny_idx_dir, tmp_path / "one", flag, background=True),
        _run(tiny_idx_dir, tmp_path / "eight", flag, devices=8, background=True))
    assert rc1 == 0, out1
    assert rc8 == 0, out8
    _assert_same(_results(tmp_path / "one"), _results(tmp_path / "eight"))
