"""Downloads from a local HTTP server: happy path, checksum failures, the mnist fallback rule."""
import dataclasses
import functools
import hashlib
import http.server
import socket
import threading

import numpy as np
import pytest

from common.data import load_dataset, registry
from common.data.download import ChecksumError, ensure_file
from common.data.idx import write_idx
from common.errors import DataError

from tests.test_data_loaders import make_cifar_tarball

SYNTH = (200, 50)  # tiny synth-digits for the fallback tests


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """Serve ``tmp_path / "www"`` on 127.0.0.1; yields (root folder, base url, request log)."""
    root = tmp_path / "www"
    root.mkdir()
    requests = []

    class Handler(_QuietHandler):
        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}", requests
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    monkeypatch.setenv("NNOTT_DATA", str(tmp_path / "cache"))
    for var in ("NNOTT_MIRROR", "NNOTT_MNIST_MIRROR", "NNOTT_FASHION_MNIST_MIRROR", "NNOTT_CIFAR10_MIRROR"):
        monkeypatch.delenv(var, raising=False)


def _md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def _publish_idx(folder, monkeypatch, name="mnist", n=30):
    """Write gz IDX files into ``folder`` and point the registry's checksums at them."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = (rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8),
              rng.integers(0, 256, (10, 28, 28), dtype=np.uint8), rng.integers(0, 10, 10, dtype=np.uint8))
    spec = registry.REGISTRY[name]
    files = []
    for remote, arr in zip(spec.files, arrays):
        write_idx(folder / remote.filename, arr)
        files.append(registry.RemoteFile(remote.filename, _md5(folder / remote.filename)))
    monkeypatch.setitem(registry.REGISTRY, name, dataclasses.replace(spec, files=tuple(files)))
    return arrays


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens here once the socket is closed


def test_download_happy_path_then_cache(server, tmp_path, monkeypatch):
    root, url, requests = server
    arrays = _publish_idx(root / "mnist", monkeypatch)
    monkeypatch.setenv("NNOTT_MIRROR", url)  # serves <url>/mnist/<file>
    ds = load_dataset("mnist", progress=False)
    np.testing.assert_array_equal(ds.x_train[:, 0], arrays[0])
    np.testing.assert_array_equal(ds.y_test, arrays[3])
    assert not ds.fell_back and ds.source == str(tmp_path / "cache" / "mnist")
    assert len(requests) == 4
    load_dataset("mnist", progress=False)  # verified cache: nothing is fetched again
    assert len(requests) == 4
    assert not list((tmp_path / "cache" / "mnist").glob("*.part"))


def test_fashion_mnist_per_dataset_mirror(server, monkeypatch):
    root, url, _ = server
    _publish_idx(root / "fm", monkeypatch, name="fashion-mnist")
    monkeypatch.setenv("NNOTT_FASHION_MNIST_MIRROR", f"{url}/fm")
    ds = load_dataset("fashion-mnist", progress=False)
    assert ds.class_names[0] == "T-shirt/top" and ds.x_train.shape == (30, 1, 28, 28)


def test_cifar10_download_and_parse(server, monkeypatch):
    root, url, _ = server
    (root / "cifar10").mkdir()
    tarball = root / "cifar10" / "cifar-10-python.tar.gz"
    make_cifar_tarball(tarball, n=3)
    spec = registry.REGISTRY["cifar10"]
    monkeypatch.setitem(registry.REGISTRY, "cifar10", dataclasses.replace(
        spec, files=(registry.RemoteFile(tarball.name, _md5(tarball)),)))
    monkeypatch.setenv("NNOTT_MIRROR", url)
    ds = load_dataset("cifar10", progress=False)
    assert ds.x_train.shape == (15, 3, 32, 32) and ds.class_names[3] == "cat"


def test_corrupt_cached_file_is_replaced(server, tmp_path, monkeypatch):
    root, url, requests = server
    _publish_idx(root / "mnist", monkeypatch)
    monkeypatch.setenv("NNOTT_MIRROR", url)
    cached = tmp_path / "cache" / "mnist" / "t10k-labels-idx1-ubyte.gz"
    load_dataset("mnist", progress=False)
    cached.write_bytes(cached.read_bytes()[:-5])  # truncate it
    load_dataset("mnist", progress=False)
    assert requests[-1].endswith("t10k-labels-idx1-ubyte.gz") and len(requests) == 5
    assert _md5(cached) == _md5(root / "mnist" / cached.name)


def test_checksum_mismatch_refetches_once_then_errors(server, tmp_path):
    root, url, requests = server
    (root / "f.bin").write_bytes(b"this is not what was published")
    dest = tmp_path / "cache" / "f.bin"
    with pytest.raises(ChecksumError, match="checksum twice"):
        ensure_file(dest, [f"{url}/f.bin"], "0" * 32, progress=False)
    assert requests == ["/f.bin", "/f.bin"]
    assert not dest.exists() and not list(dest.parent.glob("*.part"))


def test_explicit_checksum_failure_is_a_data_error(server, monkeypatch):
    root, url, _ = server
    _publish_idx(root / "mnist", monkeypatch)
    spec = registry.REGISTRY["mnist"]
    bad = (dataclasses.replace(spec.files[0], md5="f" * 32),) + spec.files[1:]
    monkeypatch.setitem(registry.REGISTRY, "mnist", dataclasses.replace(spec, files=bad))
    monkeypatch.setenv("NNOTT_MIRROR", url)
    with pytest.raises(DataError, match="checksum"):
        load_dataset("mnist", progress=False)


def test_offline_default_mnist_falls_back_with_one_warning(monkeypatch, capsys):
    monkeypatch.setenv("NNOTT_MIRROR", f"http://127.0.0.1:{_closed_port()}")
    ds = load_dataset("mnist", explicit=False, progress=False, synth_sizes=SYNTH)
    assert ds.fell_back and ds.name == "synth-digits"
    assert ds.x_train.shape == (200, 1, 28, 28)
    out = capsys.readouterr().out
    warnings = [line for line in out.splitlines() if line.startswith("[warn]")]
    assert len(warnings) == 1 and "synth-digits" in warnings[0]


def test_offline_explicit_mnist_does_not_fall_back(monkeypatch, tmp_path):
    monkeypatch.setenv("NNOTT_MIRROR", f"http://127.0.0.1:{_closed_port()}")
    with pytest.raises(DataError) as info:
        load_dataset("mnist", progress=False, synth_sizes=SYNTH)
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path / "cache" / "mnist") in message and "--dataset" in message
    assert not (tmp_path / "cache" / "synth-digits").exists()


def test_only_mnist_falls_back(monkeypatch):
    monkeypatch.setenv("NNOTT_MIRROR", f"http://127.0.0.1:{_closed_port()}")
    with pytest.raises(DataError, match="fashion-mnist"):
        load_dataset("fashion-mnist", explicit=False, progress=False)
