"""Local data: IDX (gz and raw), the four .npy files in every layout, .npz, image folders, CIFAR."""
import io
import pickle
import tarfile

import numpy as np
import pytest
from PIL import Image

from common.data import load_dataset
from common.data.cifar import read_cifar10, safe_unpickle
from common.data.idx import parse_idx, read_idx, write_idx
from common.errors import DataError


def _digits(n, shape=(28, 28), seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, *shape), dtype=np.uint8), rng.integers(0, 10, n).astype(np.int64)


@pytest.fixture(autouse=True)
def _private_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NNOTT_DATA", str(tmp_path / "cache"))


@pytest.mark.parametrize("gz", [True, False])
def test_idx_directory_roundtrip(tmp_path, gz):
    x_tr, y_tr = _digits(50)
    x_te, y_te = _digits(20, seed=1)
    suffix = ".gz" if gz else ""
    write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", x_tr)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", y_tr.astype(np.uint8))
    write_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", x_te)
    write_idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", y_te.astype(np.uint8))
    ds = load_dataset(str(tmp_path))
    assert ds.x_train.shape == (50, 1, 28, 28) and ds.x_train.dtype == np.uint8
    np.testing.assert_array_equal(ds.x_train[:, 0], x_tr)
    np.testing.assert_array_equal(ds.y_test, y_te)
    assert ds.y_train.dtype == np.int64
    assert ds.image_shape == (1, 28, 28)


def test_idx_rejects_truncated_and_garbage(tmp_path):
    x, _ = _digits(5)
    write_idx(tmp_path / "a.idx", x)
    raw = (tmp_path / "a.idx").read_bytes()
    with pytest.raises(DataError, match="truncated"):
        parse_idx(raw[:-10])
    with pytest.raises(DataError, match="magic"):
        parse_idx(b"not an idx file at all")
    (tmp_path / "b.gz").write_bytes(b"\x1f\x8b" + b"\x00" * 20)
    with pytest.raises(DataError, match="gzip"):
        read_idx(tmp_path / "b.gz")


def _save_npy(d, x_tr, y_tr, x_te, y_te):
    d.mkdir(parents=True, exist_ok=True)
    for name, arr in zip(("train_images", "train_labels", "test_images", "test_labels"),
                         (x_tr, y_tr, x_te, y_te)):
        np.save(d / f"{name}.npy", arr)


@pytest.mark.parametrize("layout", ["NHW", "NHWC", "NCHW", "flat", "float01"])
def test_npy_layouts(tmp_path, layout):
    rgb = layout in ("NHWC", "NCHW")
    c = 3 if rgb else 1
    x_tr, y_tr = _digits(40, (c, 8, 8))
    x_te, y_te = _digits(10, (c, 8, 8), seed=1)
    convert = {
        "NHW": lambda x: x[:, 0],
        "NHWC": lambda x: x.transpose(0, 2, 3, 1),
        "NCHW": lambda x: x,
        "flat": lambda x: x.reshape(len(x), -1),
        "float01": lambda x: x[:, 0].astype(np.float32) / 255.0,
    }[layout]
    _save_npy(tmp_path / "d", convert(x_tr), y_tr, convert(x_te), y_te)
    ds = load_dataset(str(tmp_path / "d"))
    assert ds.x_train.shape == (40, c, 8, 8) and ds.x_train.dtype == np.uint8
    np.testing.assert_array_equal(ds.x_train, x_tr)
    np.testing.assert_array_equal(ds.y_train, y_tr)


def test_npy_one_hot_labels(tmp_path):
    x_tr, y_tr = _digits(30)
    x_te, y_te = _digits(10, seed=1)
    _save_npy(tmp_path, x_tr, np.eye(10)[y_tr], x_te, np.eye(10, dtype=np.float32)[y_te])
    ds = load_dataset(str(tmp_path))
    np.testing.assert_array_equal(ds.y_train, y_tr)
    np.testing.assert_array_equal(ds.y_test, y_te)
    assert ds.num_classes == max(y_tr.max(), y_te.max()) + 1


def test_npy_bad_inputs_are_clear(tmp_path):
    x_tr, y_tr = _digits(30)
    _save_npy(tmp_path / "mismatch", x_tr, y_tr[:20], x_tr, y_tr)
    with pytest.raises(DataError, match="30 images but 20 labels"):
        load_dataset(str(tmp_path / "mismatch"))
    _save_npy(tmp_path / "soft", x_tr, np.full((30, 10), 0.1), x_tr, y_tr)
    with pytest.raises(DataError, match="one-hot"):
        load_dataset(str(tmp_path / "soft"))
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset(str(tmp_path / "does-not-exist"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no dataset"):
        load_dataset(str(tmp_path / "empty"))


def test_npz_keras_layout(tmp_path):
    x_tr, y_tr = _digits(12)
    x_te, y_te = _digits(6, seed=1)
    np.savez(tmp_path / "mnist.npz", x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
    ds = load_dataset(str(tmp_path / "mnist.npz"))
    assert ds.x_test.shape == (6, 1, 28, 28)


def _write_png(path, value, size=(12, 10), mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = value if mode == "L" else (value, 255 - value, 0)
    Image.new(mode, (size[1], size[0]), colour).save(path)


def test_image_folder_without_split_holds_out_stratified_20_percent(tmp_path):
    for cls, value in (("cat", 40), ("dog", 200)):
        for i in range(10):
            _write_png(tmp_path / "pets" / cls / f"{i}.png", value)
    ds = load_dataset(str(tmp_path / "pets"), seed=3)
    assert ds.class_names == ["cat", "dog"]
    assert ds.x_train.shape == (16, 1, 12, 10) and ds.x_test.shape == (4, 1, 12, 10)
    assert np.bincount(ds.y_test).tolist() == [2, 2]
    # the pixel values tell the class apart: labels follow the folders
    assert np.all(ds.x_train[ds.y_train == 0] == 40) and np.all(ds.x_train[ds.y_train == 1] == 200)
    again = load_dataset(str(tmp_path / "pets"), seed=3)
    np.testing.assert_array_equal(again.y_test, ds.y_test)


def test_image_folder_with_train_test_and_mixed_sizes(tmp_path):
    root = tmp_path / "imgs"
    for split, n in (("train", 3), ("test", 2)):
        for cls in ("a", "b"):
            for i in range(n):
                _write_png(root / split / cls / f"{i}.jpg", 100, size=(20 + i, 30), mode="RGB")
    ds = load_dataset(str(root))
    assert ds.x_train.shape == (6, 3, 64, 64)  # sizes differ -> the default size
    assert ds.x_test.shape == (4, 3, 64, 64)
    sized = load_dataset(str(root), image_size=(16, 16))
    assert sized.image_shape == (3, 16, 16)


def _cifar_batch(n, seed):
    rng = np.random.default_rng(seed)
    return {b"batch_label": b"x", b"labels": rng.integers(0, 10, n).tolist(),
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"filenames": [b"f"] * n}


def make_cifar_tarball(path, n=4):
    """A miniature CIFAR-10 python tarball with the real member names."""
    with tarfile.open(path, "w:gz") as tar:
        for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
            raw = pickle.dumps(_cifar_batch(n, i), protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))


def test_cifar_tarball_parses_to_nchw(tmp_path):
    make_cifar_tarball(tmp_path / "c.tar.gz")
    x_tr, y_tr, x_te, y_te = read_cifar10(tmp_path / "c.tar.gz")
    assert x_tr.shape == (20, 3, 32, 32) and x_te.shape == (4, 3, 32, 32)
    first = _cifar_batch(4, 0)
    np.testing.assert_array_equal(x_tr[0, 1].ravel(), first[b"data"][0, 1024:2048])  # green plane
    assert y_tr.dtype == np.int64 and y_tr[:4].tolist() == first[b"labels"]


class _Evil:
    def __reduce__(self):
        import os
        return (os.system, ("echo pwned",))


def test_safe_unpickler_refuses_code():
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        safe_unpickle(pickle.dumps({"data": _Evil()}))
    assert safe_unpickle(pickle.dumps({"a": np.arange(3)}))["a"].tolist() == [0, 1, 2]
