"""jadam.experiments.data's readers on small files written here: valid, truncated, corrupt."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flax")
from jadam.experiments import data

SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


def idx_bytes(array: np.ndarray) -> bytes:
    """Independent IDX writer: magic 00 00 <type> <ndim>, big-endian dims, big-endian data."""
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D}
    header = bytes([0, 0, codes[array.dtype], array.ndim])
    dims = b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + dims + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_mnist(
    directory: Path, prefix: str, n: int, *, gz: bool, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    for suffix, array in (("images-idx3-ubyte", images), ("labels-idx1-ubyte", labels)):
        raw = idx_bytes(array)
        name = f"{prefix}-{suffix}"
        if gz:
            (directory / (name + ".gz")).write_bytes(gzip.compress(raw))
        else:
            (directory / name).write_bytes(raw)
    return images, labels


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_roundtrip(tmp_path, gz):
    array = np.arange(2 * 3 * 4, dtype=np.int32).reshape(2, 3, 4) - 7
    raw = idx_bytes(array)
    path = tmp_path / ("a.idx.gz" if gz else "a.idx")
    path.write_bytes(gzip.compress(raw) if gz else raw)
    np.testing.assert_array_equal(data.read_idx(path), array)


def test_read_idx_truncated_names_file_and_sizes(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(idx_bytes(np.zeros((3, 28, 28), np.uint8))[:-10])
    with pytest.raises(
        data.DataFormatError,
        match=r"t10k-images-idx3-ubyte.*shape \(3, 28, 28\).*2352 data bytes.*2342",
    ):
        data.read_idx(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not an IDX file.*empty file"),
        (b"PK\x03\x04rest", "not an IDX file.*50 4b 03 04"),
        (bytes([0, 0, 0x07, 1, 0, 0, 0, 1, 5]), "unknown IDX type code 0x07"),
        (bytes([0, 0, 0x08, 3, 0, 0]), "header truncated"),
    ],
)
def test_read_idx_corrupt(tmp_path, content, message):
    path = tmp_path / "bad"
    path.write_bytes(content)
    with pytest.raises(data.DataFormatError, match=message):
        data.read_idx(path)


def test_read_idx_corrupt_gzip(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((50, 28, 28), np.uint8)))[:-30])
    with pytest.raises(data.DataFormatError, match="gzipped but cannot be decompressed"):
        data.read_idx(path)


def test_read_idx_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope.*does not exist"):
        data.read_idx(tmp_path / "nope")


@pytest.mark.parametrize("gz", [False, True])
def test_load_mnist_idx_train_and_test(tmp_path, gz):
    train_images, train_labels = write_mnist(tmp_path, "train", 30, gz=gz, seed=1)
    _, test_labels = write_mnist(tmp_path, "t10k", 20, gz=gz, seed=2)
    ds = data.load_mnist_idx(tmp_path)
    assert ds.train_x.shape == (30, 28, 28, 1) and ds.test_x.shape == (20, 28, 28, 1)
    assert ds.train_x.dtype == np.float32 and not ds.stand_in
    np.testing.assert_allclose(ds.train_x[..., 0], train_images / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ds.test_y, test_labels)
    np.testing.assert_array_equal(ds.train_y, train_labels)


def test_load_mnist_idx_test_files_only_are_split(tmp_path):
    write_mnist(tmp_path, "t10k", 50, gz=True)
    ds = data.load_mnist_idx(tmp_path)
    assert (len(ds.train_y), len(ds.test_y)) == (40, 10)
    assert "t10k files only" in ds.source


def test_load_mnist_idx_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        data.load_mnist_idx(tmp_path / "missing")
    with pytest.raises(
        FileNotFoundError, match=r"no MNIST test files.*t10k-images-idx3-ubyte\[\.gz\]"
    ):
        data.load_mnist_idx(tmp_path)
    write_mnist(tmp_path, "t10k", 5, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(4, np.uint8)))
    with pytest.raises(data.DataFormatError, match=r"images \(5, 28, 28\) and labels \(4,\)"):
        data.load_mnist_idx(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.full(5, 12, np.uint8)))
    with pytest.raises(data.DataFormatError, match=r"labels must be digits 0..9, found 12..12"):
        data.load_mnist_idx(tmp_path)


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="../shared/data/mnist is not present")
def test_real_mnist_test_set():
    images = data.read_idx(SHARED_MNIST / "t10k-images-idx3-ubyte.gz")
    labels = data.read_idx(SHARED_MNIST / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10_000, 28, 28) and images.dtype == np.uint8
    counts = np.bincount(labels, minlength=10)
    np.testing.assert_array_equal(counts, [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])
    ds = data.load_dataset("mnist", str(SHARED_MNIST))
    assert (len(ds.train_y), len(ds.test_y)) == (8000, 2000)


def test_embedded_mnist():
    ds = data.load_dataset("mnist")
    assert ds.train_x.shape == (4000, 28, 28, 1) and ds.test_x.shape == (1000, 28, 28, 1)
    np.testing.assert_array_equal(np.bincount(ds.train_y), [400] * 10)
    np.testing.assert_array_equal(np.bincount(ds.test_y), [100] * 10)
    assert 0.0 <= ds.train_x.min() and ds.train_x.max() == 1.0
    assert len(set(ds.train_y[:50].tolist())) == 10  # Shuffled: a prefix holds every class.


def test_mnist_csv_wrong_columns(tmp_path):
    path = tmp_path / "m.csv.gz"
    path.write_bytes(gzip.compress(b"1,2,3\n4,5,6\n"))
    with pytest.raises(data.DataFormatError, match=r"expected 785 columns.*found 3"):
        data.read_mnist_csv(path)


def write_cifar_batch(path: Path, n: int, seed: int) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, n)]
    path.write_bytes(pickle.dumps({b"batch_label": b"x", b"data": raw, b"labels": labels}))
    return raw, labels


def test_load_cifar10(tmp_path):
    directory = tmp_path / "cifar-10-batches-py"
    directory.mkdir()
    raws = [
        write_cifar_batch(directory / name, 3, i)[0]
        for i, name in enumerate(data.CIFAR_TRAIN_BATCHES)
    ]
    test_raw, test_labels = write_cifar_batch(directory / "test_batch", 4, 9)
    ds = data.load_dataset("cifar10", str(tmp_path))
    assert ds.train_x.shape == (15, 32, 32, 3) and ds.test_x.shape == (4, 32, 32, 3)
    # Channel-major rows: the first 1024 bytes are red, row by row.
    assert ds.train_x[0, 0, 1, 0] == pytest.approx(raws[0][0, 1] / 255.0)
    assert ds.train_x[0, 0, 0, 2] == pytest.approx(raws[0][0, 2048] / 255.0)
    assert ds.test_x[3, 31, 31, 1] == pytest.approx(test_raw[3, 2047] / 255.0)
    np.testing.assert_array_equal(ds.test_y, test_labels)


def test_cifar_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"CIFAR-10 batches missing.*data_batch_1"):
        data.load_cifar10(tmp_path)
    path = tmp_path / "data_batch_1"
    write_cifar_batch(path, 2, 0)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(data.DataFormatError, match="not a readable CIFAR-10 pickle batch"):
        data.read_cifar_batch(path)
    path.write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(
        data.DataFormatError, match=r"expected uint8 data of shape \(n, 3072\).*\(2, 100\)"
    ):
        data.read_cifar_batch(path)
    path.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(
        data.DataFormatError, match="expected a dict with b'data' and b'labels', found list"
    ):
        data.read_cifar_batch(path)


def write_imdb(root: Path, train: str, test: str) -> None:
    for split, text in (("train", train), ("test", test)):
        (root / "aclImdb" / split).mkdir(parents=True)
        (root / "aclImdb" / split / "labeledBow.feat").write_text(text)


def test_load_imdb(tmp_path):
    write_imdb(tmp_path, "9 0:3 5:1 12000:2\n2 1:1 9999:4\n", "7 3:1\n")
    ds = data.load_dataset("imdb", str(tmp_path))
    assert ds.train_x.shape == (2, 10_000) and ds.train_x.dtype == np.uint8
    np.testing.assert_array_equal(
        np.flatnonzero(ds.train_x[0]), [0, 5]
    )  # 12000 ≥ vocabulary: dropped.
    np.testing.assert_array_equal(np.flatnonzero(ds.train_x[1]), [1, 9999])
    np.testing.assert_array_equal(ds.train_y, [1, 0])
    np.testing.assert_array_equal(ds.test_y, [1])


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("9 0:3 x:1", r"line 2: expected 'rating index:count \.\.\.'"),
        ("9 0:3 4", "line 2: expected"),
        ("5 0:1", "line 2: rating must be 1..4 or 7..10, found 5"),
        ("8 -3:1", "line 2: negative word index -3"),
    ],
)
def test_imdb_malformed(tmp_path, line, message):
    path = tmp_path / "labeledBow.feat"
    path.write_text("1 0:1\n" + line + "\n")
    with pytest.raises(data.DataFormatError, match=message):
        data.read_svmlight_bow(path)


def test_imdb_missing_and_empty(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"labeledBow\.feat"):
        data.load_imdb(tmp_path)
    (tmp_path / "e.feat").write_text("")
    with pytest.raises(data.DataFormatError, match="is empty"):
        data.read_svmlight_bow(tmp_path / "e.feat")


def test_zipf_stand_in():
    ds = data.zipf_bag_of_words(num_train=600, num_test=200, seed=3)
    assert ds.stand_in and "STAND-IN" in ds.label
    assert ds.train_x.shape == (600, 10_000) and ds.test_x.shape == (200, 10_000)
    document_frequency = ds.train_x.mean(axis=0)
    assert document_frequency[0] > document_frequency[100] > document_frequency[5000]
    assert 0.005 < ds.train_x.mean() < 0.05  # Sparse, like IMDB reviews over 10,000 words.
    assert 0.4 < ds.train_y.mean() < 0.6
    again = data.zipf_bag_of_words(num_train=600, num_test=200, seed=3)
    np.testing.assert_array_equal(ds.train_x, again.train_x)


def test_cifar_stand_in_and_unknown_name():
    ds = data.load_dataset("cifar10")
    assert ds.stand_in and ds.train_x.shape[1:] == (28, 28, 1)
    with pytest.raises(ValueError, match="unknown dataset 'svhn'; expected one of"):
        data.load_dataset("svhn")
