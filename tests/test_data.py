"""Tests for aevb.data (IDX parsing, config-driven loading, validation split,
binarization) and aevb.tfds_data (offline failure, mocked and prepared datasets).

All TFDS tests run without network and without TensorFlow: TFDS datasets are
either faked with `tfds.testing.mock_data` or prepared in tmp_path from a tiny
in-test builder whose features need no TensorFlow to encode.
"""

from __future__ import annotations

import ast
import gzip
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from conftest import write_idx

from aevb import data
from aevb.data import idx as idx_lib
from aevb.data import sources
from aevb.data import tfds as tfds_data

IDX_FILES = {
    "train-images-idx3-ubyte.gz": "train_images",
    "train-labels-idx1-ubyte.gz": "train_labels",
    "t10k-images-idx3-ubyte.gz": "test_images",
    "t10k-labels-idx1-ubyte.gz": "test_labels",
}


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def idx_file(path: Path, array: np.ndarray) -> Path:
    """Writes `array` as an IDX file at `path` (gzipped when the name ends in .gz)."""
    write_idx(str(path), array)
    return path


def idx_bytes(tmp_path: Path, array: np.ndarray) -> bytes:
    """The raw (uncompressed) IDX encoding of `array`, to corrupt in a test."""
    return idx_file(tmp_path / "valid.idx", array).read_bytes()


def tiny_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """Train 12 and test 4 random 3x5 images with labels 0..9."""
    rng = np.random.default_rng(seed)
    return {
        "train_images": rng.integers(0, 256, (12, 3, 5), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, 12, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (4, 3, 5), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, 4, dtype=np.uint8),
    }


def write_idx_dir(directory: Path, arrays: dict[str, np.ndarray], *, gzipped: bool = True) -> Path:
    """The four standard IDX files of `arrays` in `directory`, gzipped or raw."""
    directory.mkdir(parents=True, exist_ok=True)
    for filename, role in IDX_FILES.items():
        name = filename if gzipped else filename.removesuffix(".gz")
        idx_file(directory / name, arrays[role])
    return directory


def make_split(n: int, height: int = 2, width: int = 2) -> data.Split:
    images = np.arange(n * height * width, dtype=np.uint32).astype(np.uint8)
    return data.Split(
        images=images.reshape(n, height, width, 1), labels=np.arange(n, dtype=np.int32)
    )


def data_config(**overrides) -> ml_collections.ConfigDict:
    fields = {
        "name": "fashion_mnist",
        "source": "auto",
        "dir": "",
        "path": "",
        "tfds_data_dir": "",
        "test_fraction": 0.1,
        "num_validation": 0,
        "seed": 0,
    }
    fields.update(overrides)
    return ml_collections.ConfigDict(fields)


def listing(path: Path) -> set[str]:
    return {str(p) for p in path.rglob("*")} if path.exists() else set()


# ---------------------------------------------------------------------------
# Real Fashion-MNIST (Debian package dataset-fashion-mnist)
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fashion_mnist() -> tuple[data.Split, data.Split]:
    if not Path(data.FASHION_MNIST_DEBIAN_DIR).is_dir():
        pytest.skip(
            f"{data.FASHION_MNIST_DEBIAN_DIR} is absent: apt-get install dataset-fashion-mnist"
        )
    return data.load_idx_dir(data.FASHION_MNIST_DEBIAN_DIR)


def test_fashion_mnist_debian_shapes_and_ranges(fashion_mnist):
    train, test = fashion_mnist
    assert train.images.shape == (60000, 28, 28, 1)
    assert test.images.shape == (10000, 28, 28, 1)
    for split in (train, test):
        assert split.images.dtype == np.uint8
        assert split.labels.dtype == np.int32
        assert split.labels.min() == 0 and split.labels.max() == 9
        assert split.images.min() == 0 and split.images.max() == 255
    # Fashion-MNIST is balanced: 6000 train / 1000 test examples per class.
    assert np.bincount(train.labels).tolist() == [6000] * 10
    assert np.bincount(test.labels).tolist() == [1000] * 10


def test_load_auto_uses_debian_fashion_mnist(fashion_mnist):
    datasets = data.load(data_config(num_validation=5000, seed=3))
    assert datasets.name == "fashion_mnist"
    assert len(datasets.train) == 55000
    assert len(datasets.validation) == 5000
    assert len(datasets.test) == 10000
    assert datasets.image_shape == (28, 28, 1)
    assert datasets.num_pixels == 784


# ---------------------------------------------------------------------------
# read_idx
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("filename", ["x-idx3-ubyte.gz", "x-idx3-ubyte"])
def test_read_idx_images_round_trip(tmp_path, filename):
    images = tiny_arrays()["train_images"]
    result = data.read_idx(idx_file(tmp_path / filename, images))
    assert result.dtype == np.uint8
    np.testing.assert_array_equal(result, images)


@pytest.mark.parametrize("filename", ["y-idx1-ubyte.gz", "y-idx1-ubyte"])
def test_read_idx_labels_round_trip(tmp_path, filename):
    labels = tiny_arrays()["train_labels"]
    result = data.read_idx(idx_file(tmp_path / filename, labels))
    assert result.shape == (12,)
    np.testing.assert_array_equal(result, labels)


def test_read_idx_sniffs_gzip_regardless_of_name(tmp_path):
    labels = tiny_arrays()["test_labels"]
    path = idx_file(tmp_path / "y-idx1-ubyte.gz", labels).rename(tmp_path / "y-idx1-ubyte")
    assert path.read_bytes().startswith(b"\x1f\x8b")  # gzipped, but not named .gz
    np.testing.assert_array_equal(data.read_idx(path), labels)


@pytest.mark.parametrize("gzipped", [True, False])
def test_read_idx_bad_magic(tmp_path, gzipped):
    payload = struct.pack(">II", 0x00000D01, 3) + b"\x00\x01\x02"  # float type code
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(gzip.compress(payload) if gzipped else payload)
    with pytest.raises(data.DataError, match=r"bad magic.*0x00000d01") as err:
        data.read_idx(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("gzipped", [True, False])
def test_read_idx_truncated_payload(tmp_path, gzipped):
    payload = idx_bytes(tmp_path, tiny_arrays()["train_images"])[:-7]
    path = tmp_path / ("short-idx3-ubyte" + (".gz" if gzipped else ""))
    path.write_bytes(gzip.compress(payload) if gzipped else payload)
    with pytest.raises(data.DataError, match=r"truncated.*180 bytes.*got 173") as err:
        data.read_idx(path)
    assert str(path) in str(err.value)


def test_read_idx_truncated_header(tmp_path):
    path = tmp_path / "header-idx3-ubyte"
    path.write_bytes(struct.pack(">II", 0x00000803, 12))
    with pytest.raises(data.DataError, match=r"truncated: expected 16 header bytes, got 8"):
        data.read_idx(path)


def test_read_idx_trailing_bytes(tmp_path):
    path = tmp_path / "long-idx1-ubyte"
    path.write_bytes(idx_bytes(tmp_path, np.arange(4, dtype=np.uint8)) + b"\x00")
    with pytest.raises(data.DataError, match=r"wrong size.*exactly 4 bytes.*got 5"):
        data.read_idx(path)


def test_read_idx_truncated_gzip_stream(tmp_path):
    path = tmp_path / "cut-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(tmp_path, tiny_arrays()["train_images"]))[:-10])
    with pytest.raises(data.DataError, match="corrupt or truncated gzip"):
        data.read_idx(path)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(data.DataError, match="cannot read IDX file"):
        data.read_idx(tmp_path / "nope-idx1-ubyte.gz")


# ---------------------------------------------------------------------------
# load_idx_dir
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("gzipped", [True, False])
def test_load_idx_dir_tiny(tmp_path, gzipped):
    arrays = tiny_arrays()
    train, test = data.load_idx_dir(write_idx_dir(tmp_path, arrays, gzipped=gzipped))
    assert train.images.shape == (12, 3, 5, 1)
    assert test.images.shape == (4, 3, 5, 1)
    assert train.labels.dtype == np.int32
    np.testing.assert_array_equal(train.images[..., 0], arrays["train_images"])
    np.testing.assert_array_equal(test.labels, arrays["test_labels"])


def test_load_idx_dir_gunzips_once_then_reads_the_cache(tmp_path, monkeypatch):
    """A rerun over untouched files reads the decoded arrays (aevb/data/cache.py); a file
    rewritten with other bytes, even under an old time, is decoded again."""
    arrays = tiny_arrays()
    first = data.load_idx_dir(write_idx_dir(tmp_path, arrays))
    unpack, unpacked = idx_lib._unpack, []
    monkeypatch.setattr(idx_lib, "_unpack",
                        lambda path, raw: unpacked.append(path.name) or unpack(path, raw))
    again = data.load_idx_dir(tmp_path)
    assert unpacked == []
    for before, after in zip(first, again):
        np.testing.assert_array_equal(after.images, before.images)
        np.testing.assert_array_equal(after.labels, before.labels)

    arrays["test_labels"][0] ^= 1
    labels_file = tmp_path / "t10k-labels-idx1-ubyte.gz"
    idx_file(labels_file, arrays["test_labels"])
    os.utime(labels_file, ns=(1, 1))
    _, test = data.load_idx_dir(tmp_path)
    assert sorted(unpacked) == sorted(IDX_FILES)
    np.testing.assert_array_equal(test.labels, arrays["test_labels"])


def test_load_idx_dir_missing_file_named(tmp_path):
    write_idx_dir(tmp_path, tiny_arrays())
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(data.DataError) as err:
        data.load_idx_dir(tmp_path)
    message = str(err.value)
    assert "t10k-labels-idx1-ubyte.gz" in message
    assert str(tmp_path) in message
    assert "train-images" not in message


def test_load_idx_dir_missing_directory(tmp_path):
    with pytest.raises(data.DataError, match="does not exist"):
        data.load_idx_dir(tmp_path / "absent")


def test_load_idx_dir_count_mismatch(tmp_path):
    arrays = tiny_arrays()
    arrays["train_labels"] = arrays["train_labels"][:-1]
    with pytest.raises(data.DataError, match=r"12 images but .* 11 labels"):
        data.load_idx_dir(write_idx_dir(tmp_path, arrays))


def test_load_idx_dir_swapped_files(tmp_path):
    arrays = tiny_arrays()
    arrays["train_images"], arrays["train_labels"] = arrays["train_labels"], arrays["train_images"]
    with pytest.raises(data.DataError, match="expected 3-D images"):
        data.load_idx_dir(write_idx_dir(tmp_path, arrays))


# ---------------------------------------------------------------------------
# load(config)
# ---------------------------------------------------------------------------


def test_load_idx_from_dir_with_validation(tmp_path):
    write_idx_dir(tmp_path, tiny_arrays())
    config = data_config(name="mnist", source="auto", dir=str(tmp_path), num_validation=3)
    datasets = data.load(config)
    assert datasets.name == "mnist"
    assert (len(datasets.train), len(datasets.validation), len(datasets.test)) == (9, 3, 4)
    assert datasets.image_shape == (3, 5, 1)
    assert datasets.num_pixels == 15


def test_load_without_validation(tmp_path):
    write_idx_dir(tmp_path, tiny_arrays())
    datasets = data.load(data_config(name="kmnist", source="idx", dir=str(tmp_path)))
    assert datasets.validation is None
    assert len(datasets.train) == 12


def test_load_idx_without_dir_for_non_fashion_names():
    with pytest.raises(data.DataError, match=r"data\.dir"):
        data.load(data_config(name="mnist", source="idx"))


def test_load_rejects_unknown_source():
    with pytest.raises(ValueError, match=r"data.source='hdf5'.*'auto', 'idx', 'tfds'"):
        data.load(data_config(source="hdf5"))


def test_load_names_missing_field():
    config = data_config()
    del config["seed"]
    with pytest.raises(ValueError, match=r"data\.seed"):
        data.load(config)


def test_resolve_auto_falls_back_to_tfds():
    assert sources._resolve_source("mnist", "auto", "") == ("tfds", "")
    assert sources._resolve_source("mnist", "auto", "/x") == ("idx", "/x")


# ---------------------------------------------------------------------------
# split_validation
# ---------------------------------------------------------------------------


def test_split_validation_sizes_disjoint_and_complete():
    split = make_split(100)
    train, validation = data.split_validation(split, 30, seed=1)
    assert len(train) == 70 and len(validation) == 30
    train_ids, validation_ids = set(train.labels), set(validation.labels)
    assert not train_ids & validation_ids
    assert train_ids | validation_ids == set(range(100))
    # Images travel with their labels.
    np.testing.assert_array_equal(validation.images, split.images[validation.labels])


def test_split_validation_deterministic_by_seed():
    split = make_split(100)
    first = data.split_validation(split, 10, seed=7)[1].labels
    again = data.split_validation(split, 10, seed=7)[1].labels
    other = data.split_validation(split, 10, seed=8)[1].labels
    np.testing.assert_array_equal(first, again)
    assert set(first) != set(other)


def test_split_validation_zero_and_invalid():
    split = make_split(10)
    assert data.split_validation(split, 0, seed=0) == (split, None)
    for bad in (-1, 10):
        with pytest.raises(ValueError, match=r"data\.num_validation"):
            data.split_validation(split, bad, seed=0)
    with pytest.raises(TypeError, match=r"data\.num_validation must be an int"):
        data.split_validation(split, 2.5, seed=0)


# ---------------------------------------------------------------------------
# to_unit_interval and binarize
# ---------------------------------------------------------------------------


def test_to_unit_interval():
    x = data.to_unit_interval(jnp.array([[0, 51, 255]], dtype=jnp.uint8))
    assert x.dtype == jnp.float32 and x.shape == (1, 3)
    np.testing.assert_allclose(x, [[0.0, 0.2, 1.0]], rtol=1e-6)
    with pytest.raises(TypeError, match="uint8"):
        data.to_unit_interval(jnp.zeros(3, jnp.float32))


def test_binarize_static_threshold():
    x = jnp.array([0.0, 0.3, 0.5, 0.51, 1.0])
    result = data.binarize(x, "static", None)
    assert result.dtype == jnp.float32
    np.testing.assert_array_equal(result, [0.0, 0.0, 0.0, 1.0, 1.0])


def test_binarize_dynamic_mean_matches_grey_level():
    x = jnp.full((100_000,), 0.3)
    sample = data.binarize(x, "dynamic", jax.random.key(0))
    assert sample.dtype == jnp.float32
    assert set(np.unique(sample).tolist()) == {0.0, 1.0}
    assert abs(float(sample.mean()) - 0.3) < 0.01


def test_binarize_dynamic_keys():
    x = jnp.full((8, 28, 28, 1), 0.5)
    a = data.binarize(x, "dynamic", jax.random.key(1))
    b = data.binarize(x, "dynamic", jax.random.key(1))
    c = data.binarize(x, "dynamic", jax.random.key(2))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.shape == x.shape


def test_binarize_none_is_identity():
    x = jnp.linspace(0.0, 1.0, 7)
    assert data.binarize(x, "none", None) is x


def test_binarize_errors():
    with pytest.raises(ValueError, match=r"'dynamic', 'static', 'none'"):
        data.binarize(jnp.zeros(2), "gumbel", None)
    with pytest.raises(ValueError, match="PRNG key"):
        data.binarize(jnp.zeros(2), "dynamic", None)


def test_binarize_under_jit_and_scan():
    @jax.jit
    def step_means(images_u8, key):
        def body(carry, step_key):
            sample = data.binarize(data.to_unit_interval(images_u8), "dynamic", step_key)
            return carry, sample.mean()

        return jax.lax.scan(body, None, jax.random.split(key, 3))[1]

    images = jnp.full((4, 28, 28, 1), 204, dtype=jnp.uint8)  # grey level 0.8
    means = step_means(images, jax.random.key(3))
    assert means.shape == (3,)
    assert len(set(np.asarray(means).tolist())) == 3  # a fresh sample each step
    np.testing.assert_allclose(means, 0.8, atol=0.05)
    static = jax.jit(lambda x: data.binarize(x, "static", None))(jnp.array([0.2, 0.9]))
    np.testing.assert_array_equal(static, [0.0, 1.0])


# ---------------------------------------------------------------------------
# Import hygiene and network probe
# ---------------------------------------------------------------------------


def _modules_loaded_by(module: str) -> list[str]:
    """aevb, TensorFlow, TFDS and Pillow modules in sys.modules after a fresh `import <module>`."""
    code = (
        f"import sys, {module}; "
        "print(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('tensorflow', 'tensorflow_datasets', 'aevb', 'PIL')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return ast.literal_eval(result.stdout)


def test_import_does_not_load_tfds_or_tensorflow():
    # aevb.data does not even import the optional TFDS module (or Pillow, which only the
    # folder source decodes with) until load() needs it.
    assert _modules_loaded_by("aevb.data") == [
        "aevb", "aevb.config", "aevb.config.checks", "aevb.data", "aevb.data.arrays",
        "aevb.data.cache",
        "aevb.data.datasets", "aevb.data.folder", "aevb.data.idx", "aevb.data.pixels",
        "aevb.data.sources"]


def test_tfds_module_imports_tfds_only_when_used():
    assert "aevb.data.tfds" in _modules_loaded_by("aevb.data.tfds")
    assert not [m for m in _modules_loaded_by("aevb.data.tfds") if not m.startswith("aevb")]


def test_sources_are_the_config_values():
    assert data.SOURCES == ("auto", "idx", "tfds", "npz", "folder")


def test_host_reachable_local_listener():
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert tfds_data.host_reachable("127.0.0.1", port, 2.0)
    assert not tfds_data.host_reachable("127.0.0.1", port, 2.0)  # closed: refused at once


def test_host_reachable_gives_up_on_hanging_lookup(monkeypatch):
    release = threading.Event()

    def hanging_connect(*args, **kwargs):
        release.wait(30)  # like a DNS lookup that never answers
        raise OSError("unreachable")

    monkeypatch.setattr(socket, "create_connection", hanging_connect)
    start = time.monotonic()
    try:
        assert not tfds_data.host_reachable("example.invalid", 443, 0.5)
        assert time.monotonic() - start < 2.0
    finally:
        release.set()


# ---------------------------------------------------------------------------
# TFDS
# ---------------------------------------------------------------------------


@pytest.fixture
def tfds():
    return pytest.importorskip("tensorflow_datasets")


@pytest.fixture
def mnist_host_unreachable(tfds):
    """Skips when the MNIST download host answers: the offline tests would download."""
    host, port = tfds_data._download_address(tfds.builder_cls("mnist"))
    if tfds_data.host_reachable(host, port, 5.0):
        pytest.skip(f"{host}:{port} is reachable; offline behaviour cannot be tested here")


def _assert_offline_error(tfds_dir: Path) -> str:
    """Runs load_tfds('mnist') offline and checks time, message and disk use."""
    home_tfds = Path.home() / "tensorflow_datasets"
    before = (listing(home_tfds), sorted(os.listdir(Path.cwd())))
    start = time.monotonic()
    with pytest.raises(data.DataError) as err:
        tfds_data.load_tfds("mnist", data_dir=tfds_dir)
    assert time.monotonic() - start < 10.0
    assert (listing(home_tfds), sorted(os.listdir(Path.cwd()))) == before
    assert not tfds_dir.exists() or listing(tfds_dir) == set()
    message = str(err.value)
    for hint in ("dataset-fashion-mnist", "data.dir", "tfds_data_dir", "tfds build mnist"):
        assert hint in message
    return message


def test_load_tfds_offline_fails_fast(tmp_path, mnist_host_unreachable):
    _assert_offline_error(tmp_path / "tfds")


def test_load_tfds_offline_with_tensorflow_probes_network(
    tmp_path, mnist_host_unreachable, monkeypatch
):
    # Pretend TensorFlow is installed so the network probe decides.
    monkeypatch.setattr(tfds_data, "_tensorflow_installed", lambda: True)
    message = _assert_offline_error(tmp_path / "tfds")
    assert "storage.googleapis.com:443 is not reachable" in message


def test_load_tfds_without_tensorflow_names_install_command(tmp_path, monkeypatch):
    monkeypatch.setattr(tfds_data, "_tensorflow_installed", lambda: False)
    with pytest.raises(data.DataError, match=r"pip install -e '\.\[tfds\]'"):
        tfds_data.load_tfds("mnist", data_dir=tmp_path)


def test_load_tfds_not_prepared_and_no_download(tmp_path, tfds):
    with pytest.raises(data.DataError, match="download=False"):
        tfds_data.load_tfds("mnist", data_dir=tmp_path, download=False)


def test_load_tfds_unknown_name(tmp_path, tfds):
    with pytest.raises(data.DataError, match=r"data\.name='no_such_dataset_xyz'"):
        tfds_data.load_tfds("no_such_dataset_xyz", data_dir=tmp_path)


def test_load_tfds_missing_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import fails
    with pytest.raises(data.DataError, match=r"pip install -e '\.\[tfds\]'"):
        tfds_data.load_tfds("mnist")


def test_load_tfds_mock_data(tmp_path, tfds, monkeypatch):
    # mock_data fakes download_and_prepare and the data source, so the
    # prepare preconditions (TensorFlow, network) do not apply.
    monkeypatch.setattr(tfds_data, "_check_can_prepare", lambda *args: None)
    with tfds.testing.mock_data(num_examples=6):
        train, test = tfds_data.load_tfds("mnist", data_dir=tmp_path)
    for split in (train, test):
        assert split.images.shape == (6, 28, 28, 1)
        assert split.images.dtype == np.uint8
        assert split.labels.dtype == np.int32
        assert split.labels.min() >= 0 and split.labels.max() <= 9


TINY_SHAPE = (4, 5, 1)


@pytest.fixture
def prepared_tfds_dir(tmp_path, tfds) -> Path:
    """A real TFDS dataset 'aevb_tiny_digits' prepared as array_record in tmp_path.

    Its images are a Tensor feature, which TFDS encodes without TensorFlow
    (Image features need tf.image.encode_png). The builder is not registered, so
    load_tfds finds the dataset from its files, as with data prepared elsewhere.
    """

    with tfds.core.registered.skip_registration():

        class AevbTinyDigits(tfds.core.GeneratorBasedBuilder):
            VERSION = tfds.core.Version("1.0.0")

            def _info(self):
                return tfds.core.DatasetInfo(
                    builder=self,
                    features=tfds.features.FeaturesDict(
                        {
                            "image": tfds.features.Tensor(shape=TINY_SHAPE, dtype=np.uint8),
                            "label": tfds.features.ClassLabel(num_classes=3),
                        }
                    ),
                    supervised_keys=("image", "label"),
                )

            def _split_generators(self, dl_manager):
                return {"train": self._generate_examples(7), "test": self._generate_examples(2)}

            def _generate_examples(self, count):
                for i in range(count):
                    yield i, {"image": np.full(TINY_SHAPE, 10 * i, np.uint8), "label": i % 3}

    AevbTinyDigits(data_dir=tmp_path).download_and_prepare(file_format="array_record")
    return tmp_path


def test_load_tfds_prepared_array_record(prepared_tfds_dir, monkeypatch):
    def no_network(*args):
        raise AssertionError("a prepared dataset must not probe the network")

    monkeypatch.setattr(tfds_data, "host_reachable", no_network)
    train, test = tfds_data.load_tfds("aevb_tiny_digits", data_dir=prepared_tfds_dir)
    assert train.images.shape == (7, *TINY_SHAPE) and test.images.shape == (2, *TINY_SHAPE)
    assert train.images.dtype == np.uint8 and train.labels.dtype == np.int32
    assert sorted(train.images[:, 0, 0, 0].tolist()) == [0, 10, 20, 30, 40, 50, 60]
    np.testing.assert_array_equal(train.labels, train.images[:, 0, 0, 0] // 10 % 3)


def test_load_tfds_tfrecord_without_tensorflow(prepared_tfds_dir, monkeypatch):
    # TFDS cannot write tfrecord without TensorFlow; simulate a dataset that has
    # no random-access (array_record) files.
    monkeypatch.setattr(tfds_data, "_tensorflow_installed", lambda: False)
    monkeypatch.setattr(tfds_data, "_open_data_source", lambda builder, split: None)
    with pytest.raises(data.DataError) as err:
        tfds_data.load_tfds("aevb_tiny_digits", data_dir=prepared_tfds_dir)
    assert "pip install -e '.[tfds]'" in str(err.value)
    assert "--file_format=array_record" in str(err.value)


def test_load_config_tfds_prepared(prepared_tfds_dir):
    config = data_config(
        name="aevb_tiny_digits",
        source="tfds",
        tfds_data_dir=str(prepared_tfds_dir),
        num_validation=2,
        seed=0,
    )
    datasets = data.load(config)
    assert (len(datasets.train), len(datasets.validation), len(datasets.test)) == (5, 2, 2)
    assert datasets.image_shape == TINY_SHAPE
