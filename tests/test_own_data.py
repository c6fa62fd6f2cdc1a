"""Your own images: the `npz` and `folder` sources give back exactly the arrays and files
written, hold out a test split when there is none, decode a folder once (the cache is keyed
by the files' contents), hash the content a resume compares, and feed every family and
architecture images of any size with 1 or 3 channels, through to a conv VAE run on a folder
of 3-channel 32 x 32 PNG files.

The refusals (a missing file, a non-uint8 array, mixed sizes, ...) are cases of
tests/test_faults.py's table of user mistakes: one line, exit status 2, nothing written.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import model_and_state, write_folder

import launch
from aevb import data as data_lib
from aevb.config import defaults
from aevb.data import folder as folder_lib
from aevb.data import sources

REPO = Path(__file__).resolve().parent.parent


def _images(n: int, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Distinct random images (each image's first pixels differ): rows identify images."""
    images = np.random.default_rng(seed).integers(0, 256, (n, *shape), np.uint8)
    images.reshape(n, -1)[:, :2] = np.stack([np.arange(n) // 256, np.arange(n) % 256], 1)
    return images


def _data_config(path: Path, **fields) -> object:
    config = defaults.base_config().data
    config.path = str(path)
    config.update(fields)
    return config


@pytest.mark.parametrize("layout", ["one file", "one file per split", "no labels, no test"])
def test_npz_layouts_give_the_arrays_written(tmp_path, layout):
    x_train, x_test = _images(30, (5, 4, 3)), _images(10, (5, 4, 3), seed=1)
    y_train, y_test = np.arange(30) % 3, np.arange(10) % 3
    if layout == "one file":
        path = tmp_path / "mine.npz"
        np.savez(path, x_train=x_train, y_train=y_train.astype(np.uint8), x_test=x_test,
                 y_test=y_test)
    elif layout == "one file per split":
        path = tmp_path
        np.savez(path / "train.npz", x=x_train, y=y_train)
        np.savez(path / "test.npz", x=x_test, y=y_test)
    else:
        path = tmp_path / "mine.npz"
        np.savez(path, x_train=x_train[..., 0])
    train, test = data_lib.load_npz(path)
    if layout == "no labels, no test":
        assert test is None and train.labels is None
        np.testing.assert_array_equal(train.images, x_train[..., :1])
        return
    np.testing.assert_array_equal(train.images, x_train)
    np.testing.assert_array_equal(test.images, x_test)
    assert train.labels.dtype == np.int32 and test.labels.dtype == np.int32
    np.testing.assert_array_equal(train.labels, y_train)
    np.testing.assert_array_equal(test.labels, y_test)


def test_without_a_test_split_a_fixed_fraction_is_held_out(tmp_path):
    """data.test_fraction of the images, the same ones whatever data.seed (which draws the
    validation split from the rest); the three splits partition the images."""
    images = _images(40, (3, 3))
    np.savez(tmp_path / "mine.npz", x_train=images)
    loaded = [data_lib.load(_data_config(tmp_path / "mine.npz", test_fraction=0.25,
                                         num_validation=5, seed=seed)) for seed in (0, 1)]
    rows = {tuple(x) for x in images.reshape(40, -1)}

    def ids(split):
        return {tuple(x) for x in split.images.reshape(len(split), -1)}

    for datasets in loaded:
        assert (len(datasets.train), len(datasets.validation), len(datasets.test)) == (25, 5, 10)
        parts = [ids(datasets.train), ids(datasets.validation), ids(datasets.test)]
        assert set().union(*parts) == rows and sum(map(len, parts)) == 40
    assert ids(loaded[0].test) == ids(loaded[1].test)
    assert ids(loaded[0].validation) != ids(loaded[1].validation)
    assert loaded[0].name == "mine" and not loaded[0].has_labels


def test_auto_reads_data_path_as_npz_or_folder(tmp_path):
    (tmp_path / "split").mkdir()
    np.savez(tmp_path / "split" / "train.npz", x=_images(4, (2, 2)))
    (tmp_path / "pictures").mkdir()
    for path, source in ((tmp_path / "a.npz", "npz"), (tmp_path / "split", "npz"),
                         (tmp_path / "pictures", "folder")):
        assert sources._resolve_source("fashion_mnist", "auto", "", str(path)) == (
            source, str(path))


def test_a_folder_gives_the_pixels_and_classes_written(tmp_path):
    """Class k is the k-th sub-folder in sorted order; RGB and grey PNG files give back
    their pixels; other files and hidden ones are skipped."""
    rgb, grey = _images(6, (7, 5, 3)), _images(4, (7, 5, 1), seed=2)
    files = {f"train/{'cat' if i < 3 else 'ant'}/{i}.png": x for i, x in enumerate(rgb[:5])}
    files["test/cat/x.png"], files["test/ant/y.png"] = rgb[5], rgb[0]
    write_folder(tmp_path / "rgb", files)
    (tmp_path / "rgb" / "train" / "cat" / "notes.txt").write_text("not an image")
    write_folder(tmp_path / "rgb", {"train/cat/.hidden.png": rgb[1]})
    train, test = data_lib.load_folder(tmp_path / "rgb")
    # Sorted: ant/3.png, ant/4.png, cat/0.png, cat/1.png, cat/2.png.
    np.testing.assert_array_equal(train.images, rgb[[3, 4, 0, 1, 2]])
    np.testing.assert_array_equal(train.labels, [0, 0, 1, 1, 1])
    np.testing.assert_array_equal(test.images, rgb[[0, 5]])
    np.testing.assert_array_equal(test.labels, [0, 1])

    write_folder(tmp_path / "grey", {f"{i}.png": x for i, x in enumerate(grey)})
    flat, none = data_lib.load_folder(tmp_path / "grey")
    assert none is None and flat.labels is None
    np.testing.assert_array_equal(flat.images, grey)


def test_a_folder_is_decoded_once_the_cache_keyed_by_content(tmp_path, monkeypatch):
    images = _images(5, (6, 6, 1))
    write_folder(tmp_path / "a", {f"{i}.png": x for i, x in enumerate(images)})
    first, _ = data_lib.load_folder(tmp_path / "a")
    decode, decoded = folder_lib._decode, []
    monkeypatch.setattr(folder_lib, "_decode",
                        lambda name, content: decoded.append(name) or decode(name, content))
    again, _ = data_lib.load_folder(tmp_path / "a")           # unchanged: from the cache
    shutil.copytree(tmp_path / "a", tmp_path / "b")           # the same contents elsewhere
    moved, _ = data_lib.load_folder(tmp_path / "b")
    assert decoded == []
    for split in (again, moved):
        np.testing.assert_array_equal(split.images, first.images)

    images[2, 3, 3] ^= 1                                       # one pixel of one file
    write_folder(tmp_path / "b", {"2.png": images[2]})
    os.utime(tmp_path / "b" / "2.png", ns=(1, 1))             # even with an old time
    changed, _ = data_lib.load_folder(tmp_path / "b")
    assert len(decoded) == 5
    np.testing.assert_array_equal(changed.images, images)


def test_the_fingerprint_is_the_content_whatever_the_format(tmp_path):
    """An .npz and a folder of the same images hash alike; one pixel or label apart, not."""
    x_train, x_test = _images(8, (4, 4, 1)), _images(3, (4, 4, 1), seed=1)
    write_folder(tmp_path / "f", {**{f"train/{i}.png": x for i, x in enumerate(x_train)},
                                  **{f"test/{i}.png": x for i, x in enumerate(x_test)}})
    np.savez(tmp_path / "a.npz", x_train=x_train, x_test=x_test)
    by_folder = data_lib.load(_data_config(tmp_path / "f")).fingerprint
    assert data_lib.load(_data_config(tmp_path / "a.npz")).fingerprint == by_folder
    x_train[7, 0, 0, 0] ^= 1
    np.savez(tmp_path / "b.npz", x_train=x_train, x_test=x_test)
    np.savez(tmp_path / "c.npz", x_train=x_train, x_test=x_test, y_train=np.zeros(8, int),
             y_test=np.zeros(3, int))
    prints = {data_lib.load(_data_config(tmp_path / n)).fingerprint for n in ("b.npz", "c.npz")}
    assert len(prints | {by_folder}) == 3


@pytest.mark.parametrize("kind, architecture, decoder", [
    ("vae", "mlp", "bernoulli"), ("vae", "mlp", "gaussian"), ("vae", "conv", "gaussian"),
    ("autoencoder", "mlp", ""), ("autoencoder", "conv", "")])
def test_every_family_and_architecture_takes_three_channels(kind, architecture, decoder):
    """Images of 12 x 8 with 3 channels: each model's per-example objective on a batch is
    finite, and the conv stack's output has all 288 inputs (the Bernoulli conv VAE runs in
    the test below)."""
    config = defaults.base_config()
    config.model.kind, config.model.architecture = kind, architecture
    config.model.latent_dim, config.model.hidden_sizes = 4, (16,)
    if decoder:
        config.model.decoder = decoder
    if architecture == "conv":
        config.model.conv.channels, config.model.conv.kernels = (4,), (3,)
        config.model.conv.strides, config.model.conv.pools = (2,), (1,)
        config.model.conv.paddings = ("same",)
    family, model, _, state = model_and_state(config, (12, 8, 3))
    x = jax.random.uniform(jax.random.key(1), (5, 12 * 8 * 3))
    terms = family.objective(config, model, train=False)(state.params, x, jax.random.key(2))
    assert terms["loss"].shape == (5,) and bool(np.isfinite(terms["loss"]).all())


def test_a_folder_of_rgb_images_trains_the_conv_vae(tmp_path, capsys):
    """3-channel 32 x 32 PNG files in class sub-folders (which a VAE ignores), the conv
    VAE: the run says what it read, records it, and draws the test images in colour (the
    first tile of the reconstructions is a test image as binarized, channels in order)."""
    ramp = np.linspace(0, 255, 32).astype(np.uint8)
    images = np.stack([np.stack(np.broadcast_arrays(ramp[:, None], ramp[None, ::-1],
                                                    np.uint8(i * 4 + 2)), -1)
                       for i in range(60)])                                  # [60, 32, 32, 3]
    write_folder(tmp_path / "rgb", {f"{'ab'[i % 2]}/{i:02d}.png": x
                                    for i, x in enumerate(images)})
    workdir = tmp_path / "run"
    status = launch.cli([
        "launch.py", f"--config={REPO}/experiments/vae.py:conv",
        f"--config.data.path={tmp_path / 'rgb'}", "--config.data.test_fraction=0.2",
        "--config.data.binarize=static", "--config.model.conv.channels=(4,8)",
        "--config.model.hidden_sizes=()", "--config.model.latent_dim=4",
        "--config.train.num_epochs=1", "--config.train.batch_size=16", "--config.eval.iwae_k=4",
        "--config.eval.iwae_num_examples=8", "--config.eval.num_images=4",
        f"--workdir={workdir}", "--compilation_cache="])
    out = capsys.readouterr().out
    assert status == 0 and "vae: rgb (48 train, 12 test)" in out
    recorded = json.loads((workdir / "data.json").read_text())
    assert recorded["image_shape"] == [32, 32, 3] and recorded["labels"] is True
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["dataset"] == "rgb" and np.isfinite(summary["test_neg_elbo"])
    from PIL import Image

    with Image.open(workdir / "reconstructions.png") as picture:
        tile = np.asarray(picture)[4:68:2, 4:68:2]       # pad 2 and size 32, drawn twice as big
    binarized = np.where(images > 127.5, 255, 0)
    assert tile.shape == (32, 32, 3) and any((tile == x).all() for x in binarized)
