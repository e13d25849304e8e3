"""MNIST loader: real files when present, and the download path against a loopback HTTP server."""
from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import os
import socket
import struct
import threading
from pathlib import Path

import numpy as np
import pytest

from resgraph import DataError
from resgraph import datasets
from resgraph.datasets import mnist, mnist_folder, parse_idx

REAL = Path(os.environ.get("RESGRAPH_DATA") or Path(__file__).resolve().parents[1].parent / "shared/data/mnist")
HAVE_REAL = all((REAL / f"{n}.gz").is_file() or (REAL / n).is_file() for n in datasets.SHA256)
needs_real = pytest.mark.skipif(not HAVE_REAL, reason=f"real MNIST not found in {REAL}")


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array as an IDX file."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.fixture
def tiny(monkeypatch) -> dict[str, bytes]:
    """A tiny fake MNIST (2 train, 1 test images) whose hashes and shapes the loader is told to expect."""
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (2, 28, 28)),
        "train-labels-idx1-ubyte": np.array([3, 9]),
        "t10k-images-idx3-ubyte": np.full((1, 28, 28), 255),
        "t10k-labels-idx1-ubyte": np.array([7]),
    }
    files = {name: idx_bytes(a) for name, a in arrays.items()}
    for name, data in files.items():
        monkeypatch.setitem(datasets.SHA256, name, hashlib.sha256(data).hexdigest())
        monkeypatch.setitem(datasets._SHAPES, name, arrays[name].shape)
    return files


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    requested: list[str]

    def log_request(self, code="-", size="-") -> None:
        self.requested.append(self.path)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server(tmp_path):
    """A loopback HTTP server serving tmp_path/'www'; yields (base URL, www folder, requested paths)."""
    www = tmp_path / "www"
    www.mkdir()
    requested: list[str] = []
    handler = type("Handler", (QuietHandler,), {"requested": requested})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", www, requested
    httpd.shutdown()
    httpd.server_close()


def closed_port_url() -> str:
    """A loopback URL nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def write_gz(folder: Path, files: dict[str, bytes]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / f"{name}.gz").write_bytes(gzip.compress(data))


@needs_real
def test_real_mnist_shapes_ranges_and_label_counts():
    data = mnist(REAL, download=False)
    assert data.train_images.shape == (60000, 784) and data.train_images.dtype == np.float32
    assert data.test_images.shape == (10000, 784) and data.test_images.dtype == np.float32
    assert data.train_labels.dtype == np.int64 and data.test_labels.dtype == np.int64
    assert data.train_images.min() == 0.0 and data.train_images.max() == 1.0
    assert np.bincount(data.train_labels).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(data.test_labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_decodes_gz_and_raw_files_to_scaled_float32(tmp_path, tiny):
    write_gz(tmp_path, {k: v for k, v in tiny.items() if "train" in k})
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (tmp_path / name).write_bytes(tiny[name])  # raw, not compressed
    data = mnist(tmp_path, download=False)
    expected = np.frombuffer(tiny["train-images-idx3-ubyte"][16:], np.uint8).reshape(2, 784) / 255.0
    np.testing.assert_allclose(data.train_images, expected, rtol=1e-7)
    assert data.train_labels.tolist() == [3, 9] and data.test_labels.tolist() == [7]
    assert data.test_images.shape == (1, 784) and np.all(data.test_images == 1.0)


def test_folder_resolution_order(tmp_path, monkeypatch):
    monkeypatch.delenv("RESGRAPH_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert mnist_folder() == tmp_path / "xdg" / "resgraph" / "mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert mnist_folder() == Path.home() / ".cache" / "resgraph" / "mnist"
    monkeypatch.setenv("RESGRAPH_DATA", str(tmp_path / "env"))
    assert mnist_folder() == tmp_path / "env"
    assert mnist_folder(tmp_path / "arg") == tmp_path / "arg"


def test_env_data_folder_is_used(tmp_path, monkeypatch, tiny):
    write_gz(tmp_path / "env", tiny)
    monkeypatch.setenv("RESGRAPH_DATA", str(tmp_path / "env"))
    assert mnist(download=False).train_labels.tolist() == [3, 9]


def test_missing_file_without_download_says_how_to_provide_it(tmp_path):
    with pytest.raises(DataError) as info:
        mnist(tmp_path, download=False)
    message = str(info.value)
    for needed in ("train-images-idx3-ubyte", "t10k-labels-idx1-ubyte.gz", str(tmp_path), "RESGRAPH_DATA"):
        assert needed in message


def test_corrupt_local_file_is_named(tmp_path, tiny):
    write_gz(tmp_path, tiny)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\0\0\x08\x01\0\0\0\x01\x05"))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz is corrupt: the SHA-256"):
        mnist(tmp_path, download=False)


def test_truncated_gzip_is_reported(tmp_path, tiny):
    write_gz(tmp_path, tiny)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:10])
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz is not a valid gzip file"):
        mnist(tmp_path, download=False)


@pytest.mark.parametrize(
    "data, match",
    [
        (b"\0\0", "too short"),
        (b"\0\0\x0d\x01" + struct.pack(">I", 1) + b"\0", "magic number 0x00000d01; expected 0x00000801"),
        (b"\0\0\x08\x03" + struct.pack(">3I", 1, 28, 28), "magic number 0x00000803; expected 0x00000801"),
        (b"\0\0\x08\x01\0\0", "ends inside its IDX header"),
        (b"\0\0\x08\x01" + struct.pack(">I", 3) + b"\0\0\0", r"shape \(3,\); expected \(10000,\)"),
        (b"\0\0\x08\x01" + struct.pack(">I", 10000) + b"\0" * 9999, "9999 data bytes; its header promises 10000"),
    ],
)
def test_parse_idx_rejects_malformed_files(data, match):
    with pytest.raises(DataError, match=match):
        parse_idx(data, "t10k-labels-idx1-ubyte")


def test_download_falls_back_to_second_mirror_after_404(tmp_path, tiny, server):
    base, www, requested = server
    write_gz(www / "good", tiny)
    cache = tmp_path / "cache"
    data = mnist(cache, mirrors=[base + "missing", base + "good/"], progress=False)
    assert data.train_labels.tolist() == [3, 9]
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{n}.gz" for n in tiny)  # no temp files left
    assert requested.count("/missing/train-images-idx3-ubyte.gz") == 1
    assert requested.count("/good/train-images-idx3-ubyte.gz") == 1
    requested.clear()
    assert mnist(cache, mirrors=[base + "good/"], progress=False).test_labels.tolist() == [7]
    assert requested == []  # cached: nothing fetched again


def test_mirrors_from_environment(tmp_path, tiny, server, monkeypatch):
    base, www, requested = server
    write_gz(www, tiny)
    monkeypatch.setenv("RESGRAPH_MNIST_MIRRORS", f"{closed_port_url()}, {base}")
    assert mnist(tmp_path / "cache", progress=False).train_labels.tolist() == [3, 9]
    assert len(requested) == 4


def test_downloaded_content_with_wrong_hash_is_rejected_and_not_kept(tmp_path, tiny, server):
    base, www, _ = server
    write_gz(www, {name: data[:-1] + b"\x01" for name, data in tiny.items()})
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as info:
        mnist(cache, mirrors=[base], progress=False)
    message = str(info.value)
    assert "could not download MNIST file train-images-idx3-ubyte" in message
    assert f"{base}train-images-idx3-ubyte.gz: wrong content: SHA-256" in message
    assert list(cache.iterdir()) == []


def test_no_network_gives_instructions(tmp_path):
    cache = tmp_path / "cache"
    url = closed_port_url()
    with pytest.raises(DataError) as info:
        mnist(cache, mirrors=[url], progress=False)
    message = str(info.value)
    assert f"{url}train-images-idx3-ubyte.gz" in message
    assert "RESGRAPH_DATA" in message and str(cache) in message and "t10k-images-idx3-ubyte.gz" in message
    assert list(cache.iterdir()) == []


def test_mirrors_must_be_a_list_of_urls(tmp_path):
    with pytest.raises(DataError, match="mirrors must be a sequence"):
        mnist(tmp_path, mirrors="http://127.0.0.1/", progress=False)


@needs_real
def test_download_of_real_files_from_loopback_mirror(tmp_path, server):
    base, www, _ = server
    if not all((REAL / f"{n}.gz").is_file() for n in datasets.SHA256):
        pytest.skip(f"no gzip MNIST files in {REAL} to serve")
    for name in datasets.SHA256:
        (www / f"{name}.gz").symlink_to(REAL / f"{name}.gz")
    data = mnist(tmp_path / "cache", mirrors=[base], progress=False)
    assert data.train_images.shape == (60000, 784) and data.test_labels.shape == (10000,)
