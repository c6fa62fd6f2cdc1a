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


def _results(workdir):
    summary = json.loads((workdir / "summary.json").read_text())
    lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    curve = [r["train_loss"] for r in lines if not r.get("final")]
    last = max(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    path = os.path.abspath(workdir / "checkpoints" / str(last) / "default")
    # Restore onto this process's one device, whatever topology saved it.
    checkpointer = ocp.StandardCheckpointer()
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                          checkpointer.metadata(path).item_metadata)
    restored = checkpointer.restore(path, target)
    params = {jax.tree_util.keystr(path): np.asarray(leaf)
              for path, leaf in jax.tree_util.tree_leaves_with_path(restored["params"])}
    return summary, curve, params


def _assert_same(a, b, rtol=1e-4):
    (sa, ca, pa), (sb, cb, pb) = a, b
    np.testing.assert_allclose(ca, cb, rtol=rtol)
    for key in ("test_neg_elbo", "test_mse", "test_log_likelihood", "train_loss"):
        if key in sa:
            assert sa[key] == pytest.approx(sb[key], rel=rtol), key
    assert pa.keys() == pb.keys()
    # Reductions over a sharded batch add in another order. Adam divides by sqrt(v), so for
    # weights of pixels that are almost always 0 (gradients ~1e-9) it turns those rounding
    # differences into steps of ~1e-4; all other weights agree to float32 precision.
    for name in pa:
        np.testing.assert_allclose(pa[name], pb[name], rtol=1e-3, atol=1e-3, err_msg=name)


@pytest.mark.parametrize("kind", ["vae", "stacked"])
def test_eight_devices_match_one_device(tiny_idx_dir, tmp_path, kind):
    rc1, out1 = _run(tiny_idx_dir, tmp_path / "one", kind=kind)
    rc8, out8 = _run(tiny_idx_dir, tmp_path / "eight", devices=8, kind=kind)
    assert rc1 == 0, out1
    assert rc8 == 0, out8
    assert "8 devices in 1 processes" in out8
    _assert_same(_results(tmp_path / "one"), _results(tmp_path / "eight"))


def test_batch_not_divisible_by_devices_fails_before_writing(tiny_idx_dir, tmp_path):
    rc, out = _run(tiny_idx_dir, tmp_path / "never", devices=8, batch=50)
    assert rc == 2
    assert "train.batch_size=50" in out and "divisible" in out
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
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert "2 devices in 2 processes" in outs[0]
    assert "summary:" in outs[0] and "summary:" not in outs[1]  # process 0 reports
    rc, out = _run(tiny_idx_dir, tmp_path / "one")
    assert rc == 0, out
    _assert_same(_results(tmp_path / "one"), _results(tmp_path / "two"))


def test_vectorized_sweep_on_four_devices_matches_one_device(tiny_idx_dir, tmp_path):
    """4 trials, their trial axis split over 4 devices, give the 1-device numbers."""
    rc1, out1 = _run(tiny_idx_dir, tmp_path / "one", "--seeds=4")
    rc4, out4 = _run(tiny_idx_dir, tmp_path / "four", "--seeds=4", devices=4)
    assert rc1 == 0, out1
    assert rc4 == 0, out4
    assert "4 trials in one program" in out4
    for seed in range(4):
        a = json.loads((tmp_path / "one" / f"seed={seed}" / "summary.json").read_text())
        b = json.loads((tmp_path / "four" / f"seed={seed}" / "summary.json").read_text())
        for key in ("train_loss", "test_neg_elbo", "test_log_likelihood"):
            assert a[key] == pytest.approx(b[key], rel=1e-4), (seed, key)
