"""The persistent compilation cache: a rerun loads every program instead of compiling it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_a_rerun_compiles_nothing_new(tiny_idx_dir, tmp_path):
    cache = tmp_path / "cache"
    args = [sys.executable, "launch.py", "--config=experiments/vae.py",
            f"--config.data.dir={tiny_idx_dir}", "--config.model.hidden_sizes=(32,)",
            "--config.train.num_epochs=1", "--config.train.batch_size=50",
            "--config.eval.iwae_k=10", "--config.eval.iwae_num_examples=20",
            f"--compilation_cache={cache}"]
    first = subprocess.run([*args, f"--workdir={tmp_path / 'a'}"], cwd=REPO, text=True,
                           capture_output=True, timeout=300)
    assert first.returncode == 0, first.stderr
    entries = sorted(p.name for p in cache.rglob("*") if p.is_file())
    assert len(entries) >= 3  # the epoch, the evaluation, the final measurements at least
    second = subprocess.run([*args, f"--workdir={tmp_path / 'b'}"], cwd=REPO, text=True,
                            capture_output=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert sorted(p.name for p in cache.rglob("*") if p.is_file()) == entries  # all hits
