"""The dataset registry and ``load_dataset``, the one entry point every CLI uses.

Named datasets: ``mnist``, ``fashion-mnist`` and ``cifar10`` are downloaded once into the
data directory and verified against their published MD5 checksums; ``synth-digits`` and
``synth-digits-rgb`` are generated, and so are the toy tasks of :mod:`common.data.toys` (``rings``,
``moons``, ``spirals``, ``blobs``, ``xor``, ``piecewise``, ``sine``).  Any other name is read as a
path to local data.

Environment variables: ``NNOTT_DATA`` (data directory), ``NNOTT_MIRROR`` (a base URL whose
``<name>/`` sub-folders replace every mirror), ``NNOTT_MNIST_MIRROR``,
``NNOTT_FASHION_MNIST_MIRROR``, ``NNOTT_CIFAR10_MIRROR`` (one dataset's base URL),
``NNOTT_SYNTH_SIZES`` ("TRAIN,TEST": the size of the generated datasets, default 60000,10000).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from common.data import cifar, local
from common.data.dataset import Dataset
from common.data.download import ChecksumError, DownloadUnavailable, ensure_file
from common.data.idx import read_idx
from common.data.synth_digits import DEFAULT_SIZES, load_synth_digits
from common.data.toys import TOYS, class_names_of, load_toy
from common.errors import DataError


@dataclass(frozen=True)
class RemoteFile:
    filename: str
    md5: str


@dataclass(frozen=True)
class DatasetSpec:
    """What the registry knows about a named dataset."""

    name: str
    kind: str                        # "idx", "cifar", "synth", "toy" or "sklearn"
    image_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    description: str
    mirrors: tuple[str, ...] = ()
    files: tuple[RemoteFile, ...] = ()

    @property
    def env_var(self) -> str:
        return f"NNOTT_{self.name.upper().replace('-', '_')}_MIRROR"


_DIGITS = tuple(str(d) for d in range(10))
_IDX_NAMES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
              "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")

#: Every named dataset.  Tests replace entries (``dataclasses.replace``) to serve their own files.
REGISTRY: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        "mnist", "idx", (1, 28, 28), _DIGITS, "handwritten digits, 60k/10k, 1x28x28",
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/",
                 "https://storage.googleapis.com/cvdf-datasets/mnist/"),
        # MD5s as published with torchvision's MNIST
        files=tuple(RemoteFile(f, m) for f, m in zip(_IDX_NAMES, (
            "f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
            "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c")))),
    "fashion-mnist": DatasetSpec(
        "fashion-mnist", "idx", (1, 28, 28),
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        "Zalando clothing images, 60k/10k, 1x28x28",
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                 "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"),
        # MD5s as published by zalandoresearch/fashion-mnist
        files=tuple(RemoteFile(f, m) for f, m in zip(_IDX_NAMES, (
            "8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
            "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310")))),
    "cifar10": DatasetSpec(
        "cifar10", "cifar", (3, 32, 32), tuple(cifar.CLASS_NAMES),
        "colour photos of 10 object classes, 50k/10k, 3x32x32",
        mirrors=("https://www.cs.toronto.edu/~kriz/",),
        files=(RemoteFile("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"),)),
    "synth-digits": DatasetSpec(
        "synth-digits", "synth", (1, 28, 28), _DIGITS,
        "generated digits from matplotlib's fonts, 60k/10k, 1x28x28 (offline)"),
    "synth-digits-rgb": DatasetSpec(
        "synth-digits-rgb", "synth", (3, 32, 32), _DIGITS,
        "generated coloured digits on textured backgrounds, 60k/10k, 3x32x32 (offline)"),
    "sklearn-digits": DatasetSpec(
        "sklearn-digits", "sklearn", (1, 28, 28), _DIGITS,
        "scikit-learn's real handwritten digits, 1438/359, 8x8 resized to 1x28x28 (offline; extra 'digits')"),
}
# the toy tasks: points (D features as a D x 1 x 1 "image"), generated from --seed and --toy-* flags
REGISTRY.update({name: DatasetSpec(name, "toy", (t.features, 1, 1), tuple(class_names_of(name)),
                                   f"{t.description} (generated, offline)") for name, t in TOYS.items()})
DATASET_NAMES = tuple(REGISTRY)
_FALLBACK_WARNED: set = set()   # data dirs whose MNIST fallback was already announced
_ALIASES = {"fashion": "fashion-mnist", "fashion_mnist": "fashion-mnist", "fmnist": "fashion-mnist",
            "cifar-10": "cifar10", "cifar": "cifar10", "synth": "synth-digits",
            "synth_digits": "synth-digits", "synth_digits_rgb": "synth-digits-rgb",
            "sklearn_digits": "sklearn-digits", "digits": "sklearn-digits"}


def synth_sizes_from_env() -> tuple[int, int]:
    """``$NNOTT_SYNTH_SIZES`` ("TRAIN,TEST") or the default 60000,10000."""
    text = os.environ.get("NNOTT_SYNTH_SIZES", "").strip()
    if not text:
        return DEFAULT_SIZES
    try:
        train, test = (int(v) for v in text.split(","))
    except ValueError:
        raise DataError(f"NNOTT_SYNTH_SIZES must be 'TRAIN,TEST' (e.g. 6000,1000), got {text!r}") from None
    if train < 10 or test < 10:
        raise DataError(f"NNOTT_SYNTH_SIZES needs at least 10 images per split, got {text!r}")
    return train, test


def list_datasets() -> list[str]:
    """The registered dataset names."""
    return list(DATASET_NAMES)


def resolve_data_dir(data_dir=None) -> Path:
    """``--data-dir``, else ``$NNOTT_DATA``, else ``~/.cache/nnott``."""
    chosen = data_dir or os.environ.get("NNOTT_DATA") or Path.home() / ".cache" / "nnott"
    return Path(chosen).expanduser()


def mirrors_for(spec: DatasetSpec) -> list[str]:
    """Base URLs to try, in order; environment variables override the built-in mirrors."""
    if os.environ.get(spec.env_var):
        return [os.environ[spec.env_var]]
    if os.environ.get("NNOTT_MIRROR"):
        return [f"{os.environ['NNOTT_MIRROR'].rstrip('/')}/{spec.name}/"]
    return list(spec.mirrors)


def _fetch_all(spec: DatasetSpec, root: Path, progress: bool) -> list[Path]:
    folder = root / spec.name
    bases = [b if b.endswith("/") else b + "/" for b in mirrors_for(spec)]
    return [ensure_file(folder / f.filename, [b + f.filename for b in bases], f.md5, progress=progress)
            for f in spec.files]


def _load_remote(spec: DatasetSpec, root: Path, progress: bool) -> Dataset:
    paths = _fetch_all(spec, root, progress)
    if spec.kind == "cifar":
        x_train, y_train, x_test, y_test = cifar.read_cifar10(paths[0])
    else:
        xs = [read_idx(p) for p in paths]
        x_train, x_test = (local.to_nchw_uint8(xs[i], str(paths[i])) for i in (0, 2))
        y_train, y_test = (local.to_int_labels(xs[i], str(paths[i])) for i in (1, 3))
    return Dataset(spec.name, x_train, y_train, x_test, y_test, list(spec.class_names),
                   source=str(root / spec.name))


def _how_to_get(spec: DatasetSpec, root: Path, reason: str) -> str:
    files = ", ".join(f.filename for f in spec.files)
    return (f"{spec.name} is not in {root / spec.name} and could not be downloaded ({reason}); "
            f"download {files} on a machine with network and copy them into that folder "
            f"(or set {spec.env_var} to a reachable mirror), or pass --dataset with a folder of "
            "local IDX or .npy files")


def _load_local(path: Path, seed: int, image_size) -> Dataset:
    if path.is_file():
        if path.suffix != ".npz":
            raise DataError(f"{path} is a file; give a .npz with x_train/y_train/x_test/y_test, "
                            "or a folder of IDX files, .npy files or class sub-folders")
        arrays = local.load_npz(path)
    elif local.find_idx_files(path) is not None:
        arrays = local.load_idx_dir(path)
    elif (path / local.NPY_FILES[0]).exists():
        arrays = local.load_npy_dir(path)
    elif local.is_image_folder(path):
        arrays = local.load_image_folder(path, seed=seed, image_size=image_size)
    else:
        raise DataError(f"{path} holds no dataset: expected the four IDX files, the four files "
                        f"{', '.join(local.NPY_FILES)}, or class folders of images")
    x_train, y_train, x_test, y_test, classes = arrays
    return Dataset(str(path), x_train, y_train, x_test, y_test, list(classes), source=str(path.resolve()))


def load_dataset(name: str = "mnist", data_dir=None, *, explicit: bool = True, seed: int = 0,
                 progress: bool = True, synth_sizes: tuple[int, int] | None = None,
                 image_size: tuple[int, int] | None = None, toy: dict | None = None) -> Dataset:
    """Load a registered dataset by name, or local data from a path.

    explicit=False means the user did not choose the dataset: then, for ``mnist`` only, when it
    is neither cached nor downloadable, one warning line is printed and ``synth-digits`` is
    returned with ``fell_back=True``.  An explicitly requested dataset never falls back.
    ``seed`` and ``synth_sizes`` (train, test) shape the generated datasets; ``seed`` also
    draws the test hold-out of an image folder without a train/test split, and
    ``image_size`` (H, W) resizes image-folder images.  ``toy`` holds the options of a toy task
    (``size``, ``noise``, ``classes``; None = its defaults).
    """
    root = resolve_data_dir(data_dir)
    key = _ALIASES.get(str(name).strip().lower(), str(name).strip().lower())
    spec = REGISTRY.get(key)
    if spec is None:
        path = Path(str(name)).expanduser()
        if path.exists():
            return _load_local(path, seed, image_size)
        raise DataError(f"unknown dataset '{name}': choose one of {', '.join(DATASET_NAMES)}, "
                        "or give the path of a folder with IDX files, .npy files or class folders")
    if spec.kind == "toy":
        return load_toy(key, seed=seed, **{k: v for k, v in (toy or {}).items() if v is not None})
    if spec.kind == "synth":
        sizes = tuple(int(n) for n in synth_sizes) if synth_sizes else synth_sizes_from_env()
        if len(sizes) != 2 or min(sizes) < 1:
            raise DataError(f"synth sizes must be two positive counts (train, test), got {synth_sizes}")
        arrays, path = load_synth_digits(root, seed, sizes, rgb=key.endswith("-rgb"), progress=progress)
        return Dataset(key, *arrays, list(spec.class_names), source=str(path))
    if spec.kind == "sklearn":
        from common.data.sklearn_digits import SOURCE, load_sklearn_digits
        return Dataset(key, *load_sklearn_digits(seed=0), list(spec.class_names), source=SOURCE)
    try:
        return _load_remote(spec, root, progress)
    except (DownloadUnavailable, ChecksumError) as exc:
        if key == "mnist" and not explicit:
            if root not in _FALLBACK_WARNED:   # once per process: a quickstart's later runs stay quiet
                _FALLBACK_WARNED.add(root)
                print(f"[warn] mnist is not cached in {root / 'mnist'} and could not be downloaded "
                      f"({exc}); using the built-in synth-digits dataset instead "
                      "(pass --dataset mnist to make this an error)", flush=True)
            fallback = load_dataset("synth-digits", root, seed=seed, progress=progress,
                                    synth_sizes=synth_sizes)
            fallback.fell_back = True
            return fallback
        if isinstance(exc, ChecksumError):
            raise
        raise DataError(_how_to_get(spec, root, str(exc))) from exc
