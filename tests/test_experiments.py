"""Every experiment file runs end to end through launch.py on a small slice of real data,
and reproduces its pinned summary: each experiment's runlocal variant, one epoch on the tiny
Fashion-MNIST (tests/data/pinned_summaries.json, the values before the package was
regrouped). Each runs in this process through `launch.cli`, the parser and entry point of
`python launch.py`; the default experiment then runs again as a real process (the README's
command), which loads every program from the persistent compilation cache.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TIMING

import launch
from aevb.run import compile_cache

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PINNED = os.path.join(REPO, "tests", "data", "pinned_summaries.json")
EXPERIMENTS = sorted(os.path.basename(p)[:-3] for p in glob.glob(f"{REPO}/experiments/*.py")
                     if not os.path.basename(p).startswith("_"))
PICTURES = {
    "vae": {"reconstructions.png", "samples.png", "interpolations.png", "filters.png"},
    "iwae": {"reconstructions.png", "samples.png", "interpolations.png", "filters.png"},
    "likelihood": {"reconstructions.png", "samples.png", "interpolations.png", "filters.png"},
    "conv": {"reconstructions.png", "filters.png"},
    "autoencoder": {"reconstructions.png", "filters.png"},
    "stacked": {"reconstructions.png", "filters.png"},
    "denoising": {"reconstructions.png", "filters.png", "denoising.png"},
    "sparse": {"reconstructions.png", "filters.png", "code_activations.png"},
    "layerwise": {"reconstructions.png", "filters.png"},
    "pretrain": {"accuracy.png"},
    "semisupervised": {"m1"},
}


def _differences(pinned: dict, summary: dict) -> list[str]:
    """Every field where `summary` differs from `pinned`, timings aside: ints, strings and
    booleans exactly, floats to 1e-5 relative (another CPU's rounding, not a change)."""
    summary = {k: v for k, v in summary.items() if not k.endswith(TIMING)}
    out = [f"{k}: missing" for k in pinned if k not in summary]
    out += [f"{k}: not pinned (= {summary[k]!r})" for k in summary if k not in pinned]
    for k in sorted(set(pinned) & set(summary)):
        want, got = pinned[k], summary[k]
        same = (got == pytest.approx(want, rel=1e-5) and type(got) is type(want)
                if isinstance(want, float) else got == want and type(got) is type(want))
        if not same:
            out.append(f"{k}: pinned {want!r}, now {got!r}")
    return out


def _launch_in_a_process(args: list[str]) -> tuple[int, str]:
    """`python launch.py --config=experiments/vae.py:runlocal ARGS` with its default
    compilation cache (this session's: tests/conftest.py), JAX logging each program it
    compiles or loads; (exit status, output)."""
    proc = subprocess.run([sys.executable, "launch.py", "--config=experiments/vae.py:runlocal",
                           *args], cwd=REPO, capture_output=True, text=True, timeout=300,
                          check=False, env={**os.environ, "JAX_LOG_COMPILES": "1"})
    return proc.returncode, proc.stdout + proc.stderr


def _entries(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.rglob("*") if p.is_file())


def test_every_experiment_is_pinned():
    with open(PINNED) as f:
        assert set(json.load(f)) == set(EXPERIMENTS) == set(PICTURES)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_runs_through_launch_and_reproduces_its_pinned_summary(
        name, tiny_idx_dir, tmp_path, capsys):
    workdir = tmp_path / name
    validation = 100 if name == "likelihood" else 0  # it selects and stops on validation
    args = [f"--config.data.dir={tiny_idx_dir}", f"--config.data.num_validation={validation}",
            "--config.train.num_epochs=1", "--config.eval.iwae_num_examples=20",
            f"--workdir={workdir}"]
    status = launch.cli(["launch.py", f"--config={REPO}/experiments/{name}.py:runlocal", *args])
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert status == 0, out
    assert "epoch   1/1" in out and "summary:" in out
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["experiment"] == name and summary.get("epochs", summary.get("m1_epochs")) == 1
    assert PICTURES[name] <= set(os.listdir(workdir))
    if name == "semisupervised":  # M1 + SVM: 100 labels, 100 more to select on
        assert summary["labels_num"] == summary["labels_num_validation"] == 100
        assert 0.2 < summary["test_accuracy"] <= 1 and "selected_C" in summary
    elif name in ("vae", "iwae", "likelihood"):
        assert summary["test_neg_elbo"] > 0 and "test_log_likelihood" in summary
        assert summary["test_log_likelihood_examples"] == 20
    else:
        assert 0 < summary["test_mse"] < 0.2 and summary["pca_mse"] > 0
    if name == "denoising":
        assert summary["test_denoising_mse"] < summary["test_corrupted_mse"]
    if name == "layerwise":
        assert summary["phases"] == 4 and summary["finetune_epochs"] == 1
    if name == "pretrain":
        assert summary["labels_num"] == 100
        assert 0 < summary["pretrained_test_accuracy"] <= 1
        assert 0 < summary["scratch_test_accuracy"] <= 1
    with open(PINNED) as f:
        pinned = json.load(f)[name]
    assert not _differences(pinned, summary), "\n".join(_differences(pinned, summary))
    if name == "vae":  # the README's command, in a fresh process, compiles nothing new
        cache = Path(compile_cache.default_directory())
        entries = _entries(cache)
        status, out = _launch_in_a_process([*args[:-1], f"--workdir={tmp_path / 'again'}"])
        assert status == 0 and "summary:" in out, out
        assert "Persistent compilation cache hit for 'jit_train_epoch'" in out
        assert _entries(cache) == entries  # every program loaded from the cache
        again = json.loads((tmp_path / "again" / "summary.json").read_text())
        assert not _differences(pinned, again), "\n".join(_differences(pinned, again))
