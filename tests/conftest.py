"""Shared test helpers: the IDX, .npz and image-folder writers, a small dataset cut from the
real Fashion-MNIST in each of those forms, the small configs of each regime, model set-up, and
the interrupt-and-resume harness."""

from __future__ import annotations

import fcntl
import gzip
import json
import os
import shutil
import signal
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import jax
import numpy as np
import pytest

from aevb import data as data_lib
from aevb import families
from aevb.config.checks import Preempted
from aevb.run import lock
from aevb.training import loop
from aevb.training.train_state import TrainState, make_optimizer

FASHION_DIR = data_lib.FASHION_MNIST_DEBIAN_DIR
TIMING = ("_seconds", "examples_per_s")
# Compiling XLA programs is most of the suite's time, so the tests compile for speed of
# compiling: without XLA's backend optimizations (three end-to-end tests: 59 s -> 35 s) and
# with XLA:CPU's older loop emitters instead of its fusion emitters (the 1-device half of
# tests/test_parallel.py: 42 s -> 30 s; the suite: 337-353 s -> 233 s). The pinned summaries
# of tests/test_experiments.py hold to 1e-5 either way, and a comparison of two runs in one
# session compares programs compiled alike. The flags are those of the jaxlib in
# constraints.txt. AEVB_TEST_XLA_OPTIMIZE=1: XLA's defaults.
FAST_COMPILE = ("--xla_backend_optimization_level=0", "--xla_llvm_disable_expensive_passes=true",
                "--xla_cpu_use_fusion_emitters=false")


# The tests that take far longer than the rest, longest first. They start first, and the
# workers take one test at a time (--maxschedchunk=1 in pyproject.toml), so that no worker
# is left with one of them while the other has finished. Other files' slow tests belong
# here too (`pytest --durations=20` lists them).
VAE_PIN = "test_experiment_runs_through_launch_and_reproduces_its_pinned_summary[vae]"
SLOW_FIRST = (
    "tests/test_parallel.py::test_eight_devices_match_one_device",
    "tests/test_parallel.py::test_two_processes_match_one_process_also_preempted",
    f"tests/test_experiments.py::{VAE_PIN}",  # and a real process
    "tests/test_experiments.py::",
    "tests/test_layerwise.py::test_interrupted_run_resumes_mid_phase",
    "tests/test_iwae.py::test_warmup_and_schedule_resume_exactly_after_a_kill",
    "tests/test_pretrain.py::test_run_compares_with_scratch_and_resumes",
    "tests/test_sweeps.py::test_worker_processes_give_the_trials_run_alone",
    "tests/test_sweeps.py::test_vectorized_trials_equal_the_same_trials_run_alone",
    "tests/test_semisupervised.py::test_m2_",
    "tests/test_conv.py::test_every_conv_autoencoder_composition_runs",
    "tests/test_results.py::test_quick_mode_",
    # The first user of a run `built_once`: the others find it made.
    "tests/test_train.py::test_run_leaves_its_files",
    "tests/test_faults.py::test_damaged_newest_checkpoint_falls_back_to_the_previous_one",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Runs the tests of SLOW_FIRST first, in its order; the others keep theirs."""
    def rank(item: pytest.Item) -> int:
        return next((i for i, prefix in enumerate(SLOW_FIRST)
                     if item.nodeid.startswith(prefix)), len(SLOW_FIRST))

    items.sort(key=rank)


def pytest_configure(config) -> None:
    """XLA_FLAGS for this process's backend (not started yet) and every process it starts."""
    del config
    if not os.environ.get("AEVB_TEST_XLA_OPTIMIZE"):
        flags = os.environ.get("XLA_FLAGS", "").split()
        os.environ["XLA_FLAGS"] = " ".join([*flags, *(f for f in FAST_COMPILE
                                                      if f not in flags)])


def write_idx(path: str, array: np.ndarray) -> None:
    """Writes a uint8 array as an IDX file (gzip when the name ends in .gz)."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I",
                                                                   *array.shape)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + np.ascontiguousarray(array, np.uint8).tobytes())


def write_folder(root: Path, images: dict[str, np.ndarray]) -> Path:
    """Writes each uint8 image [H, W, 1 or 3] as a PNG at `root/<relative path>`."""
    from PIL import Image

    for name, pixels in images.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        pixels = pixels[..., 0] if pixels.shape[-1] == 1 else pixels
        Image.fromarray(np.ascontiguousarray(pixels)).save(root / name)
    return root


@pytest.fixture(scope="session", autouse=True)
def _caches_in_a_temporary_directory(tmp_path_factory) -> Iterator[Path]:
    """Every cache the suite would write under ~/.cache goes to a temporary directory of
    this test process (an xdist worker), which the processes it starts inherit:
    XDG_CACHE_HOME (launch.py's JAX compilation cache `<it>/aevb/jax`), MPLCONFIGDIR
    (matplotlib's font cache), AEVB_CACHE_DIR (the PCA baselines) and JAX's persistent
    compilation cache, so that a program compiled once by a test or a subprocess is loaded
    by the next that needs it. One per worker: JAX writes a cache entry in place, so two
    processes that compile at once must not share a directory (a subprocess that runs
    beside its test, not in its stead, turns the cache off). A shared directory under
    JAX's file lock (`jax_compilation_cache_max_size`) was tried: the suite took 2.8 times
    as long."""
    from jax.experimental.compilation_cache import compilation_cache as jax_cache

    from aevb.run import compile_cache

    root = tmp_path_factory.getbasetemp() / "caches"
    jax_dir = root / "xdg" / "aevb" / "jax"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(root / "xdg"))
        patch.setenv("MPLCONFIGDIR", str(root / "matplotlib"))
        patch.setenv("AEVB_CACHE_DIR", str(root / "aevb"))
        patch.setenv("JAX_COMPILATION_CACHE_DIR", str(jax_dir))
        patch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
        patch.setenv("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
        assert compile_cache.default_directory() == str(jax_dir)
        compile_cache.enable(str(jax_dir))
        yield root
        jax.config.update("jax_compilation_cache_dir", None)
        jax_cache.reset_cache()


@pytest.fixture(autouse=True)
def _release_workdir_locks():
    """Tests that call a regime directly (not through the router, which releases its locks)
    leave its workdir locked by this worker process; each test starts with none held."""
    yield
    lock.release_all()


def built_once(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """`<dir>/name`, made by `build(<dir>/name)` once in the session: the first xdist worker
    to ask builds it in a directory both workers share, the other waits for it. For runs
    several tests read (or copy, to change them)."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    target, done = root / name, root / f"{name}.done"
    with open(root / f"{name}.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # released when the file closes
        if not done.exists():
            shutil.rmtree(target, ignore_errors=True)
            build(target)
            lock.release_all()  # the run's workdir lock: the readers are other processes
            done.touch()
    return target


@pytest.fixture(scope="session")
def tiny_idx_dir(tmp_path_factory) -> str:
    """1,000 training and 200 test images of real Fashion-MNIST, in the standard IDX layout
    (one directory for both workers: a run `built_once` names it in its config)."""
    if not os.path.isdir(FASHION_DIR):
        pytest.skip(f"{FASHION_DIR} is missing: apt-get install dataset-fashion-mnist")

    def write(out: Path) -> None:
        out.mkdir()
        for prefix, split in zip(("train", "t10k"), _tiny_splits()):
            write_idx(str(out / f"{prefix}-images-idx3-ubyte.gz"), split.images[..., 0])
            write_idx(str(out / f"{prefix}-labels-idx1-ubyte.gz"), split.labels.astype(np.uint8))

    return str(built_once(tmp_path_factory, "tiny_fashion_mnist", write))


def _tiny_splits() -> tuple[data_lib.Split, data_lib.Split]:
    """The images and labels of `tiny_idx_dir`: the first 1,000 training and 200 test."""
    train, test = data_lib.load_idx_dir(FASHION_DIR)
    return (data_lib.Split(images=train.images[:1000], labels=train.labels[:1000]),
            data_lib.Split(images=test.images[:200], labels=test.labels[:200]))


@pytest.fixture(scope="session")
def tiny_npz(tiny_idx_dir, tmp_path_factory) -> str:
    """`tiny_idx_dir`'s images and labels in one .npz (x_train, y_train, x_test, y_test):
    a run on it is the run on the IDX files, the dataset's name aside."""
    def write(out: Path) -> None:
        train, test = _tiny_splits()
        out.mkdir()
        np.savez(out / "tiny.npz", x_train=train.images[..., 0], y_train=train.labels,
                 x_test=test.images[..., 0], y_test=test.labels)

    return str(built_once(tmp_path_factory, "tiny_npz", write) / "tiny.npz")


@pytest.fixture(scope="session")
def tiny_folder(tiny_idx_dir, tmp_path_factory) -> str:
    """`tiny_idx_dir`'s images as PNG files in train/ and test/, without labels (no class
    sub-folders), named in their IDX order: a label-free run on it is the run on the IDX
    files."""
    def write(out: Path) -> None:
        for split, part in zip(("train", "test"), _tiny_splits()):
            write_folder(out, {f"{split}/{i:04d}.png": x for i, x in enumerate(part.images)})

    return str(built_once(tmp_path_factory, "tiny_folder", write))


# ----------------------------------------------------------------------------- small configs
def use_data(config, where: str) -> None:
    """Points `config` at the tiny data in any of its forms: data.dir for the IDX directory,
    data.path for the .npz file or the image folder."""
    own = where.endswith(".npz") or not list(Path(where).glob("train-images*"))
    config.data.dir, config.data.path = ("", where) if own else (where, "")



def small_vae_config(data_dir: str):
    """The default VAE config shrunk to seconds: tiny data, small model, small IWAE."""
    from experiments import vae

    config = vae.get_config()
    use_data(config, data_dir)
    config.model.hidden_sizes = (64,)
    config.model.latent_dim = 4
    config.train.num_epochs = 2
    config.train.batch_size = 50
    config.eval.every_epochs = 1
    config.eval.batch_size = 100
    config.eval.iwae_k = 20
    config.eval.iwae_num_examples = 50
    config.eval.num_images = 16
    return config


def small_layerwise_config(data_dir: str, tied: bool = False):
    """A 784-48-24-8 stack, 2 epochs per phase and 1 of fine-tuning, on the tiny data."""
    from experiments import layerwise as experiment

    config = experiment.get_config()
    use_data(config, data_dir)
    config.data.num_validation = 0
    config.model.hidden_sizes = (48, 24)
    config.model.latent_dim = 8
    config.model.tied_weights = tied
    config.train.batch_size = 50
    config.train.num_epochs = 2
    config.train.finetune_epochs = 1
    config.eval.batch_size = 100
    config.eval.num_images = 4
    return config


def small_pretrain_config(data_dir: str, variant: str = ""):
    """A 784-32-8 autoencoder for 1 epoch, then 60 classifier steps on 100 labels."""
    from experiments import pretrain as experiment

    config = experiment.get_config(variant)
    use_data(config, data_dir)
    config.model.hidden_sizes = (32,)
    config.model.latent_dim = 8
    config.train.num_epochs = 1
    config.train.batch_size = 50
    config.eval.batch_size = 100
    config.eval.iwae_k = 5
    config.eval.iwae_num_examples = 10
    config.eval.num_images = 4
    config.labels.num = 100
    config.classifier.num_steps = 60
    config.classifier.eval_every_steps = 20
    config.classifier.batch_size = 50
    return config


def small_semisupervised_config(data_dir: str, variant: str = ""):
    """M1 784-32-4 (1 epoch) and M2 with 16 hidden units and 3 latents (2 epochs), on the
    tiny data: 100 labels, 100 validation labels, batches of 50 + 20 (2 per class)."""
    from experiments import semisupervised as experiment

    config = experiment.get_config(variant)
    use_data(config, data_dir)
    config.model.hidden_sizes = (32,)
    config.model.latent_dim = 4
    config.train.num_epochs = 1
    config.train.batch_size = 50
    config.eval.iwae_k = 5
    config.eval.iwae_num_examples = 10
    config.eval.num_images = 4
    config.m2.hidden_sizes = (16,)
    config.m2.latent_dim = 3
    config.m2.num_epochs = 2
    config.m2.batch_size = 50
    config.m2.labeled_batch_size = 20
    return config


@pytest.fixture
def tiny_config(tiny_idx_dir):
    return small_vae_config(tiny_idx_dir)


def model_and_state(config, image_shape: tuple[int, int, int] = (28, 28, 1), seed: int = 0):
    """(family, model, optimizer, fresh train state) of a config, from key(seed)."""
    family = families.get(config.model.kind)
    model = family.make_model(config.model, image_shape)
    tx = make_optimizer(config.train)
    params = family.init_params(model, jax.random.key(seed), image_shape)
    return family, model, tx, TrainState.create(params, tx)


def comparable(summary: dict) -> dict:
    """A summary without its timings (which differ between two runs of one config)."""
    return {k: v for k, v in summary.items() if not k.endswith(TIMING)}


# ----------------------------------------------------------------------------- resume harness

class Interrupted(Exception):
    """Stands for a kill right after a round was logged (and checkpointed, if due)."""


def interrupt_and_resume(monkeypatch, run: Callable[[object, str], dict], config, workdir: str,
                         phase: str, round_: int, how: str = "preempt") -> dict:
    """Runs `run(config, workdir)` until phase `phase` ('' for a plain run) reaches round
    `round_`, stops it there, then runs it again to the end; returns the resumed run's
    summary. how='preempt': SIGTERM arrives during the round, which the run finishes,
    saves and marks before it stops (`checks.Preempted`); how='kill': it stops right after
    the round was logged, as a kill would, with the checkpoints its cadence made."""
    if how == "kill":
        original = loop.Run._progress

        def progress(self, p, r, *args):
            original(self, p, r, *args)
            if p.name == phase and r == round_:
                raise Interrupted

        with monkeypatch.context() as patch:
            patch.setattr(loop.Run, "_progress", progress)
            with pytest.raises(Interrupted):
                run(config.copy_and_resolve_references(), workdir)
        return run(config, workdir)

    round_keys = loop.Phase.round_keys

    def signalled(self, r):
        if self.name == phase and r == round_:
            os.kill(os.getpid(), signal.SIGTERM)
        return round_keys(self, r)

    with monkeypatch.context() as patch:
        patch.setattr(loop.Phase, "round_keys", signalled)
        with pytest.raises(Preempted) as stopped:
            run(config.copy_and_resolve_references(), workdir)
    assert stopped.value.round == round_
    metrics = [json.loads(line) for line in Path(workdir, "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["preempted"] and not Path(workdir, "summary.json").exists()
    return run(config, workdir)
