"""No lost runs, no tracebacks for user mistakes: the workdir lock, the checkpoint fallback,
a kill during a checkpoint save, and a table of bad invocations of launch.py.

Most invocations run in this process through `launch.cli` (the same parser and entry point
as the command line); the lock holder and the kill during a save are real processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import built_once, comparable, write_folder

import launch
from aevb.data import tfds as tfds_data
from aevb.run import lock

REPO = Path(__file__).resolve().parent.parent
VAE = str(REPO / "experiments" / "vae.py")


def tiny_flags(data_dir: str, epochs: int = 3) -> list[str]:
    """The default VAE, shrunk to seconds on the tiny IDX data."""
    return [f"--config={VAE}", f"--config.data.dir={data_dir}",
            "--config.model.hidden_sizes=(32,)", "--config.model.latent_dim=4",
            f"--config.train.num_epochs={epochs}", "--config.train.batch_size=50",
            "--config.train.checkpoint_every_epochs=1",
            "--config.eval.iwae_k=10", "--config.eval.iwae_num_examples=20",
            "--config.eval.num_images=4", "--compilation_cache="]


def run_cli(*args: str) -> int:
    return launch.cli(["launch.py", *args])


def tree(path: Path) -> dict[str, str]:
    """Every file under `path` with a hash of its bytes ({} when absent; a file: itself)."""
    if path.is_file():
        return {".": hashlib.sha1(path.read_bytes()).hexdigest()}
    return {str(p.relative_to(path)): hashlib.sha1(p.read_bytes()).hexdigest() if p.is_file()
            else "dir" for p in sorted(path.rglob("*"))} if path.exists() else {}


# ----------------------------------------------------------------------------- bad invocations

def _bad_idx_dir(tiny_idx_dir: str, tmp_path: Path) -> str:
    bad = tmp_path / "bad_idx"
    shutil.copytree(tiny_idx_dir, bad)
    (bad / "train-images-idx3-ubyte.gz").write_bytes(b"not an IDX file")
    return str(bad)


def _own(path: Path | str) -> list[str]:
    """The flags that read `path` (an .npz file or an image folder) instead of the IDX files."""
    return ["--config.data.dir=", f"--config.data.path={path}"]


def _images(n: int, shape: tuple[int, ...] = (8, 8)) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, *shape), np.uint8)


def _npz(tmp_path: Path, **arrays: np.ndarray) -> list[str]:
    np.savez(tmp_path / "mine.npz", **arrays)
    return _own(tmp_path / "mine.npz")


def _folder(tmp_path: Path, files: dict[str, np.ndarray | bytes]) -> list[str]:
    """A folder of the `files` (relative path -> an image [H, W, C] or the file's bytes)."""
    root = tmp_path / "images"
    write_folder(root, {k: v for k, v in files.items() if isinstance(v, np.ndarray)})
    for name, content in files.items():
        if isinstance(content, bytes):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(content)
    return _own(root)


def _no_sweep_file(tmp_path: Path) -> str:
    path = tmp_path / "no_sweep.py"
    path.write_text(f"import sys\nsys.path.insert(0, {str(REPO)!r})\n"
                    "from experiments.vae import get_config\n")
    return str(path)


# (case, extra args given (tiny data dir, tmp path), what the message must name, workdir)
# workdir: "absent" (a path that does not exist), "empty" (an empty directory), "file".
BAD = [
    ("typo", lambda d, t: ["--config.train.epochs=3"], "num_epochs", "absent"),
    ("typo in a section", lambda d, t: ["--config.model.latnt_dim=3"], "latnt_dim", "absent"),
    ("no such section", lambda d, t: ["--config.foo.bar=1"], "foo.bar", "empty"),
    ("not a number", lambda d, t: ["--config.model.latent_dim=abc"], "latent_dim", "absent"),
    ("a section set to a value", lambda d, t: ["--config.train=1"], "config.train", "absent"),
    ("unknown flag", lambda d, t: ["--bogus=1"], "bogus", "absent"),
    ("stray argument", lambda d, t: ["stray"], "stray", "absent"),
    ("latent dim", lambda d, t: ["--config.model.latent_dim=0"], "model.latent_dim", "empty"),
    ("batch larger than the data", lambda d, t: ["--config.train.batch_size=5000"],
     "train.batch_size", "absent"),
    ("binarization", lambda d, t: ["--config.data.binarize=grey"], "data.binarize", "absent"),
    ("activation", lambda d, t: ["--config.model.activation=swish"], "model.activation",
     "absent"),
    ("optimizer", lambda d, t: ["--config.train.optimizer=lion"], "train.optimizer", "absent"),
    ("learning rate", lambda d, t: ["--config.train.learning_rate=-1.0"],
     "train.learning_rate", "absent"),
    ("model kind", lambda d, t: ["--config.model.kind=foo"], "model.kind", "absent"),
    ("seed beyond int32", lambda d, t: ["--config.train.seed=4294967296"], "2147483647",
     "absent"),
    ("selection on -L_k of an ELBO run", lambda d, t: [
        "--config.data.num_validation=100",
        "--config.train.select_on=validation_neg_iwae_bound"], "train.objective='iwae'",
     "absent"),
    ("selection on an unknown metric", lambda d, t: ["--config.train.select_on=test_mse"],
     "validation_neg_elbo", "absent"),
    ("selection without a validation split",
     lambda d, t: ["--config.train.select_on=validation_neg_elbo"], "data.num_validation",
     "absent"),
    ("gated conv layers", lambda d, t: ["--config.model.activation=gated",
                                        "--config.model.architecture=conv"], "mlp", "absent"),
    ("log-variance clip upside down",
     lambda d, t: ["--config.model.encoder_log_var_clip=(2.0, -6.0)"], "low < high", "absent"),
    ("a prior on an autoencoder", lambda d, t: ["--config.model.kind=autoencoder",
                                                "--config.model.prior=vampprior"],
     "model.kind='vae'", "absent"),
    ("prior", lambda d, t: ["--config.model.prior=vamp"], "vampprior", "absent"),
    ("whole training set held out", lambda d, t: ["--config.data.num_validation=1000"],
     "data.num_validation", "empty"),
    ("data source", lambda d, t: ["--config.data.source=hdf5"], "data.source", "absent"),
    ("missing data directory", lambda d, t: [f"--config.data.dir={t}/nowhere"], "nowhere",
     "absent"),
    ("bad IDX file", lambda d, t: [f"--config.data.dir={_bad_idx_dir(d, t)}"],
     "train-images-idx3-ubyte.gz", "empty"),
    ("IDX files and an .npz", lambda d, t: [f"--config.data.path={t}/mine.npz"], "data.path",
     "absent"),
    ("missing .npz file", lambda d, t: _own(f"{t}/none.npz"), "none.npz", "absent"),
    ("missing image folder", lambda d, t: _own(f"{t}/no_folder"), "no_folder", "absent"),
    ("float images", lambda d, t: _npz(t, x_train=_images(60) / 255.0),
     "(x * 255).round().astype(np.uint8)", "absent"),
    ("labels unlike the images in number", lambda d, t: _npz(
        t, x_train=_images(60), y_train=np.zeros(59, int)), "y_train has 59 labels", "absent"),
    ("an array of another name", lambda d, t: _npz(t, images=_images(60)), "x_train",
     "absent"),
    ("no images in a folder", lambda d, t: _folder(t, {"notes.txt": b"mine"}), "no image files",
     "absent"),
    ("an unreadable image", lambda d, t: _folder(t, {"a.png": _images(1, (8, 8, 1))[0],
                                                     "b.png": b"not a png"}), "b.png", "absent"),
    ("images of mixed sizes", lambda d, t: _folder(t, {"a.png": _images(1, (8, 8, 1))[0],
                                                       "b.png": _images(1, (9, 8, 1))[0]}),
     "mixed sizes", "absent"),
    ("images of mixed channel counts", lambda d, t: _folder(
        t, {"a.png": _images(1, (8, 8, 1))[0], "b.png": _images(1, (8, 8, 3))[0]}),
     "mixed channel counts", "absent"),
    ("class folders that differ", lambda d, t: _folder(t, {
        f"{split}/{label}/{i}.png": _images(1, (8, 8, 1))[0]
        for i, (split, label) in enumerate([("train", "bag"), ("train", "coat"),
                                            ("test", "bag"), ("test", "shoe")])}),
     "only in train: ['coat']; only in test: ['shoe']", "absent"),
    ("train/ without test/", lambda d, t: _folder(t, {"train/a.png": _images(1, (8, 8, 1))[0]}),
     "has train/ but not test/", "absent"),
    ("pretraining on images without labels", lambda d, t: [
        f"--config={REPO}/experiments/pretrain.py", *_npz(t, x_train=_images(60))], "task",
     "absent"),
    ("workdir is a file", lambda d, t: [], "--workdir", "file"),
    ("missing config file", lambda d, t: [f"--config={t}/nope.py"], "nope.py", "absent"),
    ("unknown variant", lambda d, t: [f"--config={VAE}:papr"], "papr", "absent"),
    ("sweep without get_sweep", lambda d, t: [f"--config={_no_sweep_file(t)}", "--sweep"],
     "get_sweep", "absent"),
    ("sweep trial against its data", lambda d, t: ["--sweep", "--config.train.batch_size=5000"],
     "train.batch_size", "absent"),
    ("gaussian decoder on binarized data", lambda d, t: ["--config.model.decoder=gaussian"],
     "model.decoder", "absent"),
    ("objective", lambda d, t: ["--config.train.objective=vimco"], "train.objective",
     "absent"),
    ("no samples", lambda d, t: ["--config.train.num_samples=0"], "train.num_samples",
     "absent"),
    ("learning-rate schedule", lambda d, t: ["--config.train.lr_schedule=linear"],
     "train.lr_schedule", "absent"),
    ("samples for an autoencoder", lambda d, t: [f"--config={REPO}/experiments/autoencoder.py",
                                                 "--config.train.num_samples=5"],
     "train.num_samples", "absent"),
    ("labels for pretraining", lambda d, t: [f"--config={REPO}/experiments/pretrain.py",
                                             "--config.labels.num=100000"],
     "labels.num", "absent"),
    ("architecture", lambda d, t: ["--config.model.architecture=resnet"],
     "model.architecture", "absent"),
    ("conv layers that shrink to nothing", lambda d, t: [
        "--config.model.architecture=conv", "--config.model.conv.channels=(4,4,4,4,4)",
        "--config.model.conv.kernels=(3,3,3,3,3)", "--config.model.conv.strides=(1,1,1,1,1)",
        "--config.model.conv.pools=(2,2,2,2,2)",
        "--config.model.conv.paddings=('same','same','same','same','same')"],
     "model.conv.pools", "absent"),
    ("one conv field too short", lambda d, t: ["--config.model.architecture=conv",
                                               "--config.model.conv.kernels=(3,3)"],
     "model.conv.kernels", "absent"),
    ("a feature-map code of the wrong size", lambda d, t: [
        f"--config={REPO}/experiments/conv.py", "--config.data.num_validation=0",
        "--config.model.latent_dim=30"],
     "model.latent_dim", "absent"),
    ("a feature-map code for a VAE", lambda d, t: ["--config.model.architecture=conv",
                                                   "--config.model.conv.code=feature_map"],
     "model.conv.code", "absent"),
    ("tied conv weights", lambda d, t: [f"--config={REPO}/experiments/conv.py",
                                        "--config.model.tied_weights=True"],
     "model.tied_weights", "absent"),
    ("layer-wise conv stack", lambda d, t: [f"--config={REPO}/experiments/conv.py:code30",
                                            "--config.train.schedule=layerwise"],
     "train.schedule", "absent"),
    ("an unbalanced labeled batch", lambda d, t: [
        f"--config={REPO}/experiments/semisupervised.py:m2", "--config.m2.labeled_batch_size=15"],
     "m2.labeled_batch_size", "absent"),
    ("M1 features of an autoencoder", lambda d, t: [
        f"--config={REPO}/experiments/semisupervised.py", "--config.model.kind=autoencoder"],
     "model.kind", "absent"),
    ("a validation split beyond the data", lambda d, t: [
        f"--config={REPO}/experiments/semisupervised.py", "--config.labels.num_validation=950"],
     "labels.num_validation", "absent"),
    ("a semi-supervised classifier", lambda d, t: [
        f"--config={REPO}/experiments/semisupervised.py",
        "--config.semisupervised.classifier=tsvm"], "semisupervised.classifier", "absent"),
    ("a graph metric", lambda d, t: [
        f"--config={REPO}/experiments/semisupervised.py",
        "--config.semisupervised.graph_metric=cosine"], "semisupervised.graph_metric",
     "absent"),
    ("a graph with more neighbours than examples", lambda d, t: [
        f"--config={REPO}/experiments/semisupervised.py",
        "--config.semisupervised.classifier=poisson",
        "--config.semisupervised.graph_neighbors=(20,5000)"],
     "semisupervised.graph_neighbors", "absent"),
    ("a probe without held-out labels", lambda d, t: [
        f"--config={REPO}/experiments/semisupervised.py", "--config.labels.hold_out=False",
        "--config.train.select_on=validation_probe_accuracy", "--config.train.select_mode=max"],
     "labels.hold_out=True", "absent"),
    ("hold-out beside a validation split", lambda d, t: [
        f"--config={REPO}/experiments/semisupervised.py", "--config.data.num_validation=100"],
     "labels.hold_out", "absent"),
]


@pytest.mark.parametrize("case, extra, name, before", BAD, ids=[c[0] for c in BAD])
def test_user_mistake_is_one_line_and_exit_2(tiny_idx_dir, tmp_path, capsys, case, extra,
                                             name, before):
    workdir = tmp_path / "workdir"
    if before == "empty":
        workdir.mkdir()
    elif before == "file":
        workdir.write_text("my notes\n")
    snapshot = tree(workdir)
    args = tiny_flags(tiny_idx_dir, epochs=1)
    for arg in extra(tiny_idx_dir, tmp_path):  # another --config replaces the first
        args = [arg, *args[1:]] if arg.startswith("--config=") else [*args, arg]
    status = run_cli(*args, f"--workdir={workdir}")
    out = capsys.readouterr()
    assert status == 2, out
    assert "Traceback" not in out.out + out.err
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.err
    assert name in lines[0]
    assert tree(workdir) == snapshot  # absent, empty, or the same file: nothing written
    assert workdir.exists() == (before != "absent")


def test_offline_tfds_is_a_user_error(tiny_idx_dir, tmp_path, capsys):
    tfds = pytest.importorskip("tensorflow_datasets")
    host, port = tfds_data._download_address(tfds.builder_cls("mnist"))
    if tfds_data.host_reachable(host, port, 5.0):
        pytest.skip(f"{host}:{port} is reachable; offline behaviour cannot be tested here")
    workdir = tmp_path / "workdir"
    status = run_cli(*tiny_flags(tiny_idx_dir, 1), "--config.data.dir=",
                     "--config.data.name=mnist", "--config.data.source=tfds",
                     f"--config.data.tfds_data_dir={tmp_path / 'tfds'}",
                     f"--workdir={workdir}")
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err and "mnist" in err
    assert not workdir.exists()


def test_a_command_line_mistake_in_a_real_process(tmp_path):
    """The same handling outside pytest: absl's app.run with launch.py's parser."""
    proc = subprocess.run([sys.executable, "launch.py", "--config=experiments/vae.py",
                           "--config.train.epochs=3", f"--workdir={tmp_path / 'never'}"],
                          cwd=REPO, text=True, capture_output=True, timeout=120,
                          check=False)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "num_epochs" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "never").exists()


# ----------------------------------------------------------------------------- the workdir lock

def _hold_lock(workdir: Path) -> subprocess.Popen:
    """Another process that takes the workdir lock and keeps it until killed."""
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r}); from aevb.run import lock; "
            f"lock.acquire({str(workdir)!r}); print('locked', flush=True); "
            "import time; time.sleep(600)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def _seed_sweep_file(tmp_path: Path) -> str:
    path = tmp_path / "seeds.py"
    path.write_text(f"import sys\nsys.path.insert(0, {str(REPO)!r})\n"
                    "from experiments.vae import get_config\nfrom aevb import sweeps\n\n"
                    "def get_sweep():\n    return sweeps.product({'train.seed': [0, 1]})\n")
    return str(path)


@pytest.mark.parametrize("where", ["run", "sweep root", "sweep trial"])
def test_busy_workdir_is_refused_and_a_killed_holder_blocks_nothing(tiny_idx_dir, tmp_path,
                                                                     capsys, where):
    workdir = tmp_path / "workdir"
    flags = tiny_flags(tiny_idx_dir, 1)
    if where != "run":  # two seeds, trained as one vectorized program
        flags = [f"--config={_seed_sweep_file(tmp_path)}", *flags[1:], "--sweep"]
    held = workdir / "seed=1" if where == "sweep trial" else workdir
    holder = _hold_lock(held)
    try:
        snapshot = tree(workdir)
        status = run_cli(*flags, f"--workdir={workdir}")
        err = capsys.readouterr().err
        assert status == 2, err
        assert f"pid {holder.pid} on host {socket.gethostname()}" in err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        if where != "sweep trial":  # a sweep claims the trials before the busy one
            assert tree(workdir) == snapshot
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert not lock._held  # the refused run released what it took
    # The OS released the killed holder's lock. (That the same command then runs to the end
    # is test_kill_during_a_checkpoint_save_resumes_to_the_straight_result's rerun.)
    lock.acquire(str(held))
    lock.release_all()


# --workdir paths that cannot be made, each for another reason the OS gives (as root too).
UNUSABLE = {"a parent is a file": ("{t}/notes.txt/run", "Not a directory"),
            "a name too long": ("{t}/new/" + "x" * 300 + "/run", "File name too long"),
            "a special filesystem": ("/proc/aevb-run/run", "No such file or directory"),
            "a device": ("/dev/null/run", "Not a directory")}


@pytest.mark.parametrize("reason", UNUSABLE)
def test_a_workdir_that_cannot_be_made_is_one_line_and_leaves_nothing(tiny_idx_dir, tmp_path,
                                                                      capsys, reason):
    (tmp_path / "notes.txt").write_text("mine\n")
    before = tree(tmp_path)
    path, because = UNUSABLE[reason]
    workdir = path.format(t=tmp_path)
    status = run_cli(*tiny_flags(tiny_idx_dir, 1), f"--workdir={workdir}")
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1, err
    assert err[0] == (f"error: --workdir {workdir} cannot be created or written ({because}): "
                      "pass a directory you can write to")
    assert tree(tmp_path) == before  # not even {t}/new, made before the long name failed


def test_lock_is_reentrant_in_one_process_and_released_by_scope(tmp_path):
    with lock.scope():
        lock.acquire(str(tmp_path / "a"))
        lock.acquire(str(tmp_path / "a"))
        assert len(lock._held) == 1
    assert not lock._held
    holder = _hold_lock(tmp_path / "a")  # another process can take it now
    holder.kill()
    holder.wait()


def test_a_waiting_acquire_takes_the_lock_once_its_holder_lets_go(tmp_path, capsys):
    """lock.acquire(wait=True), as runs sharing a phase-1 model use it: it waits while
    another process holds the workdir, and takes it when that process ends."""
    holder = _hold_lock(tmp_path / "a")
    threading.Timer(1.0, holder.kill).start()
    with lock.scope():
        lock.acquire(str(tmp_path / "a"), wait=True)  # returns once the holder is killed
        assert f"waiting for pid {holder.pid}" in capsys.readouterr().err
        assert str(tmp_path / "a" / lock.LOCK_FILE) in lock._held
        lock.release(str(tmp_path / "a"))
        assert not lock._held
    holder.wait()


# ----------------------------------------------------------------------------- checkpoints

def _damage(checkpoint: Path) -> None:
    """Overwrites every file of a checkpoint, as a bad disk or a stray copy would."""
    for p in checkpoint.rglob("*"):
        if p.is_file():
            p.write_text("{ not what was saved")


@pytest.fixture(scope="session")
def straight(tiny_idx_dir, tmp_path_factory) -> Path:
    """The workdir of one uninterrupted 4-epoch run of `tiny_flags` (checkpoints 3 and 4
    kept), made once in the session, which the tests below damage copies of, or compare
    their resumed runs with."""
    def run(workdir: Path) -> None:
        assert run_cli(*tiny_flags(tiny_idx_dir, epochs=4), f"--workdir={workdir}") == 0

    return built_once(tmp_path_factory, "test_faults_straight", run)


def _copy(straight: Path, tmp_path: Path) -> Path:
    shutil.copytree(straight, tmp_path / "run")
    return tmp_path / "run"


def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(tiny_idx_dir, straight,
                                                                  tmp_path, capsys):
    workdir = _copy(straight, tmp_path)
    checkpoints = workdir / "checkpoints"
    assert sorted(os.listdir(checkpoints)) == ["3", "4"]
    _damage(checkpoints / "4")
    good = tree(checkpoints / "3")
    capsys.readouterr()

    assert run_cli(*tiny_flags(tiny_idx_dir, epochs=4), f"--workdir={workdir}") == 0
    out = capsys.readouterr()
    assert "warning: the checkpoint of epoch 4" in out.err and "resuming from epoch 3" in out.err
    assert "resuming" in out.out and "epoch 3" in out.out
    assert sorted(os.listdir(checkpoints)) == ["3", "4", "4.broken"]  # nothing good deleted
    assert tree(checkpoints / "3") == good
    resumed = json.loads((workdir / "summary.json").read_text())
    assert comparable(resumed) == comparable(json.loads((straight / "summary.json").read_text()))
    epochs = [json.loads(line)["epoch"] for line in (workdir / "metrics.jsonl").open()]
    assert epochs == [1, 2, 3, 4, 4]  # epoch 4 once, then the final line


def test_no_restorable_checkpoint_stops_and_leaves_every_file(tiny_idx_dir, straight, tmp_path,
                                                              capsys):
    workdir = _copy(straight, tmp_path)
    for name in ("3", "4"):
        _damage(workdir / "checkpoints" / name)
    snapshot = tree(workdir)
    capsys.readouterr()
    assert run_cli(*tiny_flags(tiny_idx_dir, epochs=4), f"--workdir={workdir}") == 2
    err = capsys.readouterr().err
    assert "no checkpoint" in err and "epoch 4" in err and "epoch 3" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    after = tree(workdir)
    # every file where it was, as it was; only the lock names its new holder
    assert after.pop(".lock") and snapshot.pop(".lock")
    assert after == snapshot


KILL_IN_SAVE = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {repo!r})
    from orbax.checkpoint._src.path import async_path  # test-only fault hook
    rename = async_path.rename

    async def rename_then_die(source, target, *args, **kwargs):
        if os.path.basename(str(target)) == "3":  # the save of epoch 3, written, not committed
            os._exit(9)
        return await rename(source, target, *args, **kwargs)

    async_path.rename = rename_then_die
    import launch
    sys.exit(launch.cli(["launch.py", *sys.argv[1:]]))
""")


def test_kill_during_a_checkpoint_save_resumes_to_the_straight_result(tiny_idx_dir, straight,
                                                                       tmp_path, capsys):
    """The suite's one real kill: a process dies in the middle of saving epoch 3's
    checkpoint (written, not committed), leaving its lock file behind. The same command,
    run again, takes the lock (the OS released it), resumes from epoch 2 and ends with the
    uninterrupted run's summary."""
    workdir = tmp_path / "run"
    args = [*tiny_flags(tiny_idx_dir, epochs=4), f"--workdir={workdir}"]
    killed = subprocess.run([sys.executable, "-c", KILL_IN_SAVE.format(repo=str(REPO)), *args],
                            cwd=REPO, capture_output=True, text=True, timeout=300,
                            check=False)
    assert killed.returncode == 9, killed.stdout + killed.stderr
    names = sorted(os.listdir(workdir / "checkpoints"))
    assert [n for n in names if n.isdigit()] == ["1", "2"], names  # 3 never committed
    assert not (workdir / "summary.json").exists()
    assert (workdir / ".lock").exists()  # the killed run's lock, which the OS released

    capsys.readouterr()
    assert run_cli(*args) == 0
    assert not lock._held  # the run released its locks when it returned
    assert "from the checkpoint of epoch 2" in capsys.readouterr().out
    resumed = json.loads((workdir / "summary.json").read_text())
    assert comparable(resumed) == comparable(json.loads((straight / "summary.json").read_text()))


# launch.py whose rounds last 0.5 s longer (after their progress line), so that a signal
# sent on a round's line arrives in the next round, whatever the machine's load.
SLOW_ROUNDS = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {repo!r})
    from aevb.training import loop
    progress = loop.Run._progress
    loop.Run._progress = lambda *args: (progress(*args), time.sleep(0.5))
    import launch
    sys.exit(launch.cli(["launch.py", *sys.argv[1:]]))
""")


def test_a_real_sigterm_saves_the_round_and_the_same_command_resumes(tiny_idx_dir, straight,
                                                                    tmp_path, capsys):
    """A real process with checkpoints every 100 epochs gets SIGTERM during epoch 2 (after
    epoch 1's line; epoch 3 on a slow machine): it ends that epoch, saves it (the only
    checkpoint that can carry the progress), marks it in metrics.jsonl and exits with
    status 75, writing no summary.
    The same command resumes it to the uninterrupted run's metrics.jsonl and summary."""
    workdir = tmp_path / "run"
    args = [*tiny_flags(tiny_idx_dir, epochs=4), "--config.train.checkpoint_every_epochs=100",
            "--config.train.checkpoint_every_secs=0", f"--workdir={workdir}"]
    proc = subprocess.Popen([sys.executable, "-c", SLOW_ROUNDS.format(repo=str(REPO)), *args],
                            cwd=REPO, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    out = []
    for line in proc.stdout:
        out.append(line)
        if line.startswith("epoch   1/4"):
            proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=300) == 75, "".join(out)
    stopped = int(out[-1].split("stopped after epoch ")[1].split(",")[0])
    assert out[-1].startswith("preempted: SIGTERM: stopped after epoch") and stopped in (2, 3)
    names = sorted(n for n in os.listdir(workdir / "checkpoints") if n.isdigit())
    assert names == [str(stopped)] and not (workdir / "summary.json").exists()
    marked = json.loads((workdir / "metrics.jsonl").read_text().splitlines()[-1])
    assert marked == {"epoch": stopped, "step": stopped * 20, "preempted": True}

    capsys.readouterr()
    t0 = time.time()
    assert run_cli(*args) == 0
    wall = time.time() - t0
    out = capsys.readouterr().out
    assert f"from the checkpoint of epoch {stopped}\n" in out
    # The time line begins with the start-up, split by part, all inside the call's wall time.
    line = next(x for x in out.splitlines() if x.startswith("time: "))
    split = re.match(r"time: start-up ([\d.]+) s \(imports ([\d.]+), backend ([\d.]+), "
                     r"data ([\d.]+), setup ([\d.]+)\), compilation", line)
    assert split, line
    total, *parts = map(float, split.groups())
    rest = sum(map(float, re.findall(r"(?:compilation|training|evaluation|checkpoints|"
                                     r"pictures) ([\d.]+) s", line)))
    assert total == pytest.approx(sum(parts), abs=0.03) and total + rest <= wall + 0.05
    resumed = json.loads((workdir / "summary.json").read_text())
    assert comparable(resumed) == comparable(json.loads((straight / "summary.json").read_text()))
    assert ([comparable(json.loads(line)) for line in (workdir / "metrics.jsonl").open()]
            == [comparable(json.loads(line)) for line in (straight / "metrics.jsonl").open()])


def test_the_start_up_counts_from_the_process_start():
    """`startup.process_start()` in a fresh interpreter: before the first line of its
    program ran, by no more than an interpreter's start (not the test process's start)."""
    code = ("import time; t = time.time(); from aevb.run import startup; "
            "print(t - startup.process_start())")
    before_program = float(subprocess.run([sys.executable, "-c", code], cwd=REPO, text=True,
                                          capture_output=True, check=True).stdout)
    assert 0.0 < before_program < 2.0
