"""A workdir is claimed once its config and data are checked (`aevb/run/workdir.py`): a resume
may add epochs under a constant learning rate, never under a schedule laid over the run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import launch
from aevb.config.checks import ConfigError
from aevb.run import files, lock
from aevb.run.workdir import claim


def _config(schedule: str, epochs: int):
    from experiments import vae

    config = vae.get_config()
    config.train.lr_schedule = schedule
    config.train.num_epochs = epochs
    return config


@pytest.mark.parametrize("schedule", ["cosine", "iwae"])
def test_more_epochs_under_a_schedule_is_refused_before_anything_is_written(tmp_path,
                                                                              schedule):
    workdir = str(tmp_path)
    claim(_config(schedule, 30), workdir)
    lock.release_all()
    before = sorted(os.listdir(workdir)), Path(files.path(workdir, files.CONFIG)).read_text()
    with pytest.raises(ConfigError, match=rf"train\.num_epochs.*30 -> 60.*{schedule}"):
        claim(_config(schedule, 60), workdir)
    assert (sorted(os.listdir(workdir)), Path(files.path(workdir, files.CONFIG)).read_text()) == before


def test_more_epochs_under_a_constant_rate_resumes(tmp_path):
    workdir = str(tmp_path)
    claim(_config("constant", 30), workdir)
    lock.release_all()
    claim(_config("constant", 60), workdir)
    with open(files.path(workdir, files.CONFIG)) as f:
        assert json.load(f)["train"]["num_epochs"] == 60


def test_the_refusal_is_one_line_and_exit_status_2(tmp_path, tiny_idx_dir, capsys):
    workdir = str(tmp_path / "run")
    config = _config("cosine", 30)
    config.data.dir = tiny_idx_dir
    claim(config, workdir)  # as a cosine run of 30 epochs would have left it
    lock.release_all()
    before = sorted(os.listdir(workdir)), Path(files.path(workdir, files.CONFIG)).read_text()
    status = launch.cli(["launch.py", "--config=experiments/vae.py",
                         f"--config.data.dir={tiny_idx_dir}", "--config.train.lr_schedule=cosine",
                         "--config.train.num_epochs=60", f"--workdir={workdir}",
                         "--compilation_cache="])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "train.num_epochs" in err[0]
    assert (sorted(os.listdir(workdir)), Path(files.path(workdir, files.CONFIG)).read_text()) == before
