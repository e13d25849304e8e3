"""MNIST: find, download (from public mirrors), verify and decode the four IDX files.

>>> data = mnist()                      # doctest: +SKIP
>>> data.train_images.shape, data.train_images.dtype
((60000, 784), dtype('float32'))

The folder is, in order: the ``root`` argument, the environment variable ``RESGRAPH_DATA``, or the
user cache ``$XDG_CACHE_HOME/resgraph/mnist`` (``~/.cache/resgraph/mnist``). Each file may be raw or
gzip-compressed (``name`` or ``name.gz``); the SHA-256 of its decompressed content must match
:data:`SHA256`. Missing files are downloaded into that folder from :data:`MIRRORS` (or the
comma-separated base URLs in ``RESGRAPH_MNIST_MIRRORS``), one mirror after the other.
"""
from __future__ import annotations

import gzip
import http.client
import hashlib
import os
import struct
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import DataError
from .fileio import atomic_write

__all__ = ["MNIST", "mnist", "mnist_folder", "MIRRORS", "SHA256", "parse_idx"]

#: SHA-256 of the decompressed content of each MNIST IDX file.
SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

#: Public mirrors serving ``<name>.gz``, tried in order.
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

_TIMEOUT_S = 30.0
_CHUNK = 1 << 16
_MAGIC_UBYTE = 0x08  # IDX element type code of unsigned bytes
_SHAPES = {  # expected shape of each file's array
    "train-images-idx3-ubyte": (60000, 28, 28),
    "train-labels-idx1-ubyte": (60000,),
    "t10k-images-idx3-ubyte": (10000, 28, 28),
    "t10k-labels-idx1-ubyte": (10000,),
}


@dataclass(frozen=True)
class MNIST:
    """The MNIST arrays: images flattened to 784 float32 pixels in [0, 1], labels int64 in 0..9."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def mnist(
    root: str | os.PathLike | None = None,
    download: bool = True,
    mirrors: Sequence[str] | None = None,
    progress: bool = True,
) -> MNIST:
    """Load MNIST, downloading the missing files into the data folder first if ``download``.

    ``root`` overrides ``RESGRAPH_DATA`` and the user cache (see the module docstring); ``mirrors``
    (base URLs, each serving ``<name>.gz``) overrides ``RESGRAPH_MNIST_MIRRORS`` and
    :data:`MIRRORS`; ``progress`` shows a tqdm bar per download. Raises :class:`DataError`, saying
    how to provide the files, when a file is missing, corrupt or cannot be downloaded.
    """
    folder = mnist_folder(root)
    arrays = {}
    for name in SHA256:
        path = _find(folder, name)
        if path is None:
            if not download:
                raise DataError(f"MNIST file {name} is missing from {folder} (download=False). {_how_to(folder)}")
            path = _download(folder, name, _mirror_list(mirrors), progress)
        arrays[name] = parse_idx(_read_verified(path, name), name)
    images = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        pixels = arrays[f"{prefix}-images-idx3-ubyte"]
        labels = arrays[f"{prefix}-labels-idx1-ubyte"]
        images[f"{split}_images"] = pixels.reshape(len(pixels), -1).astype(np.float32) / np.float32(255.0)
        images[f"{split}_labels"] = labels.astype(np.int64)
    return MNIST(**images)


def mnist_folder(root: str | os.PathLike | None = None) -> Path:
    """The MNIST folder: ``root``, else ``$RESGRAPH_DATA``, else the user cache (not created here)."""
    if root is not None:
        return Path(root).expanduser()
    if os.environ.get("RESGRAPH_DATA"):
        return Path(os.environ["RESGRAPH_DATA"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "resgraph" / "mnist"


def parse_idx(data: bytes, name: str) -> np.ndarray:
    """Decode the IDX file ``name`` (its decompressed bytes) to a uint8 array of its expected shape."""
    if len(data) < 4:
        raise DataError(f"MNIST file {name} is too short ({len(data)} bytes) to be an IDX file")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    expected = _SHAPES[name]
    if zero != 0 or dtype_code != _MAGIC_UBYTE or ndim != len(expected):
        raise DataError(
            f"MNIST file {name} has IDX magic number 0x{int.from_bytes(data[:4], 'big'):08x}; "
            f"expected 0x{_MAGIC_UBYTE << 8 | len(expected):08x} (unsigned bytes, {len(expected)} dimensions)"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"MNIST file {name} ends inside its IDX header ({len(data)} bytes)")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    if shape != expected:
        raise DataError(f"MNIST file {name} holds an array of shape {shape}; expected {expected}")
    if len(data) - header != int(np.prod(shape)):
        raise DataError(
            f"MNIST file {name} has {len(data) - header} data bytes; its header promises {int(np.prod(shape))}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _find(folder: Path, name: str) -> Path | None:
    """The raw or gzip file for ``name`` in ``folder`` (raw preferred), or None."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _decompress(raw: bytes, path: Path | str) -> bytes:
    if not str(path).endswith(".gz"):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path} is not a valid gzip file ({exc})") from exc


def _read_verified(path: Path, name: str) -> bytes:
    """The decompressed content of ``path``, after checking its SHA-256."""
    try:
        data = _decompress(path.read_bytes(), path)
    except OSError as exc:
        raise DataError(f"cannot read MNIST file {path}: {exc}") from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256[name]:
        raise DataError(
            f"MNIST file {path} is corrupt: the SHA-256 of its content is {digest}, expected {SHA256[name]}. "
            f"Delete it and try again. {_how_to(path.parent)}"
        )
    return data


def _mirror_list(mirrors: Sequence[str] | None) -> list[str]:
    if mirrors is None:
        env = os.environ.get("RESGRAPH_MNIST_MIRRORS", "")
        mirrors = [m.strip() for m in env.split(",") if m.strip()] or list(MIRRORS)
    if isinstance(mirrors, str) or not all(isinstance(m, str) and m for m in mirrors):
        raise DataError(f"mirrors must be a sequence of non-empty base-URL strings, got {mirrors!r}")
    return [m if m.endswith("/") else m + "/" for m in mirrors]


def _download(folder: Path, name: str, mirrors: list[str], progress: bool) -> Path:
    """Fetch ``name.gz`` from the first mirror that serves the right content; return its path."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the MNIST folder {folder}: {exc}. {_how_to(folder)}") from exc
    target = folder / f"{name}.gz"
    failures = []
    for base in mirrors:
        url = base + target.name
        try:
            _fetch_atomically(url, target, name, progress)
            return target
        except (OSError, http.client.HTTPException, DataError, ValueError) as exc:  # URLError is an OSError
            failures.append(f"{url}: {exc}")
    raise DataError(
        f"could not download MNIST file {name} into {folder}; every mirror failed ("
        + "; ".join(failures) + f"). {_how_to(folder)}"
    )


def _fetch_atomically(url: str, target: Path, name: str, progress: bool) -> None:
    """Download ``url`` into memory, verify its content, then write it atomically to ``target``."""
    from tqdm.auto import tqdm

    chunks = []
    with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=target.name, disable=not progress) as bar:
            while chunk := response.read(_CHUNK):
                chunks.append(chunk)
                bar.update(len(chunk))
    content = b"".join(chunks)
    digest = hashlib.sha256(_decompress(content, url)).hexdigest()
    if digest != SHA256[name]:
        raise DataError(f"wrong content: SHA-256 {digest}, expected {SHA256[name]}")
    atomic_write(target, lambda f: f.write(content))


def _how_to(folder: Path) -> str:
    names = ", ".join(f"{n}.gz" for n in SHA256)
    return (
        f"To provide MNIST by hand, put the four files {names} (gzip-compressed or raw, without .gz) "
        f"from {MIRRORS[0]} into {folder}, or set RESGRAPH_DATA to the folder that holds them "
        "(or pass root= / --data)."
    )
