"""Every experiment file runs end to end through launch.py, on a small slice of real data."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENTS = sorted(os.path.basename(p)[:-3] for p in glob.glob(f"{REPO}/experiments/*.py")
                     if not os.path.basename(p).startswith("_"))
PICTURES = {
    "vae": {"reconstructions.png", "samples.png", "interpolations.png", "filters.png"},
    "iwae": {"reconstructions.png", "samples.png", "interpolations.png", "filters.png"},
    "conv": {"reconstructions.png", "filters.png"},
    "autoencoder": {"reconstructions.png", "filters.png"},
    "stacked": {"reconstructions.png", "filters.png"},
    "denoising": {"reconstructions.png", "filters.png", "denoising.png"},
    "sparse": {"reconstructions.png", "filters.png", "code_activations.png"},
    "layerwise": {"reconstructions.png", "filters.png"},
    "pretrain": {"accuracy.png"},
    "semisupervised": {"m1"},
}


def test_every_experiment_file_is_covered():
    assert set(EXPERIMENTS) == set(PICTURES)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_runs_through_launch(name, tiny_idx_dir, tmp_path):
    workdir = tmp_path / name
    cmd = [sys.executable, "launch.py", f"--config=experiments/{name}.py:runlocal",
           f"--config.data.dir={tiny_idx_dir}", "--config.data.num_validation=0",
           "--config.train.num_epochs=1", "--config.eval.iwae_num_examples=20",
           f"--workdir={workdir}"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "epoch   1/1" in proc.stdout and "summary:" in proc.stdout
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["experiment"] == name and summary.get("epochs", summary.get("m1_epochs")) == 1
    assert PICTURES[name] <= set(os.listdir(workdir))
    if name == "semisupervised":  # M1 + SVM: 100 labels, 100 more to select on
        assert summary["labels_num"] == summary["labels_num_validation"] == 100
        assert 0.2 < summary["test_accuracy"] <= 1 and "selected_C" in summary
        return
    if name in ("vae", "iwae"):
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
