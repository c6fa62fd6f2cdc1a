"""The results page (`python -m aevb.results`): its quick mode on the tiny data, and the
committed page and README block against what the committed records write."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from aevb import results
from aevb.results import __main__ as results_cli
from aevb.results import runner

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_page_and_the_readme_are_what_the_records_write():
    """docs/results.md and the README's headline block, from docs/results/records/: an edit
    by hand to either (or a record without its page) fails here."""
    records = runner.load_records(os.path.join(REPO, "docs", "results", "records"))
    assert set(records) <= {row.key for row in results.ROWS}
    with open(os.path.join(REPO, "docs", "results.md")) as f:
        assert f.read() == results.render_page(results.ROWS, records, "results/figures")
    with open(os.path.join(REPO, "README.md")) as f:
        readme = f.read()
    assert results.current_block(readme) == results.render_readme_block(
        results.ROWS, records, "docs/results.md")
    for key, record in records.items():  # each record's figures are committed beside it
        row = next(r for r in results.ROWS if r.key == key)
        for name in [*row.figures, *(["curves.png"] if row.curves else [])]:
            assert os.path.exists(os.path.join(REPO, "docs", "results", "figures",
                                               f"{key}-{name}")), (key, name)
        assert record["command"] == row.command()  # the row as it is now


def test_quick_mode_runs_rows_records_them_and_writes_the_page(tiny_idx_dir, tmp_path,
                                                               capsys, monkeypatch):
    """Two rows in quick mode on the tiny data: a VampPrior protocol run (its learning curves
    from the validation bound) and the deep autoencoder (its reconstructions, its ratio to
    PCA); every other row is listed as not run; a second run runs nothing; an unknown row
    and a failing row are one line each."""
    root = tmp_path / "quick"
    flags = (f"--config.data.dir={tiny_idx_dir} --config.train.num_epochs=1 "
             "--config.eval.iwae_num_examples=20 --config.data.num_validation=100")
    args = ["--quick", f"--root={root}", f"--flags={flags}"]
    assert results_cli.main([*args, "--rows=likelihood:vampprior,stacked-deep"]) == 0
    records = runner.load_records(str(root / "results" / "records"))
    assert sorted(records) == ["likelihood-vampprior", "stacked-deep"]
    vamp, deep = records["likelihood-vampprior"], records["stacked-deep"]
    assert vamp["command"].startswith(
        "python launch.py --config=experiments/likelihood.py:vampprior,runlocal")
    summary = json.loads((root / "stacked-deep" / "summary.json").read_text())
    assert deep["summary"]["test_mse"] == summary["test_mse"]
    assert deep["wall_seconds"] > 0 and deep["date"] and "core" in deep["machine"]
    page = (root / "results.md").read_text()
    ratio = summary["test_mse"] / summary["pca_mse"]
    assert f"{summary['test_mse']:.5f} = {ratio:.3f} × PCA-30" in page
    assert f"{-vamp['summary']['test_log_likelihood']:.2f} nats" in page
    assert page.count("not run yet") == len(results.ROWS) - 2
    for name in ("likelihood-vampprior-curves.png", "stacked-deep-reconstructions.png"):
        assert (root / "results" / "figures" / name).stat().st_size > 1000
        assert f"(results/figures/{name})" in page
    block = (root / "README-block.md").read_text()
    assert block.count("\n| `") == sum(row.readme for row in results.ROWS)

    capsys.readouterr()
    monkeypatch.setattr(runner.subprocess, "run", lambda *a, **k: pytest.fail("ran again"))
    assert results_cli.main([*args, "--rows=stacked:deep"]) == 0
    assert "stacked-deep: recorded already" in capsys.readouterr().out
    monkeypatch.undo()

    assert results_cli.main([*args, "--rows=nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no row nope" in err[0]
    bad = ["--quick", f"--root={root}", f"--flags={flags} --config.model.latnt_dim=3",
           "--rows=autoencoder"]
    assert results_cli.main(bad) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "autoencoder" in err[0] and "exit status 2" in err[0]
    assert "latnt_dim" in (root / "autoencoder.log").read_text()


def test_a_signal_to_the_runner_reaches_the_row_which_saves_and_the_runner_says_so(
        tmp_path, monkeypatch):
    """SIGTERM to the runner while a row runs: the row gets it (here a stand-in process that
    exits 75, as launch.py does after saving its round), the runner waits for it, and the
    row's error says that the same command resumes it; the runner's own handler is back."""
    stand_in = ("import signal, sys, time; "
                "signal.signal(signal.SIGTERM, lambda *a: sys.exit(75)); "
                "print('ready', flush=True); time.sleep(60)")
    popen = runner.subprocess.Popen

    def start(args, **kwargs):
        proc = popen([sys.executable, "-c", stand_in], **kwargs)
        log = Path(kwargs["stdout"].name)
        while "ready" not in log.read_text():  # its handler is installed
            time.sleep(0.05)
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
        return proc

    monkeypatch.setattr(runner.subprocess, "Popen", start)
    before = signal.getsignal(signal.SIGTERM)
    row = next(r for r in results.ROWS if r.key == "autoencoder")
    with pytest.raises(runner.RowError, match="preempted.*the same command resumes it") as e:
        runner.run_row(row, str(tmp_path), str(tmp_path / "records"), str(tmp_path / "f"))
    assert e.value.status == runner.PREEMPTED
    assert signal.getsignal(signal.SIGTERM) == before
    assert not (tmp_path / "records").exists()
