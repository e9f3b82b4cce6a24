"""Datasets from local files: IDX directories, the four ``.npy`` files, ``.npz``, image folders.

Every loader returns ``(x_train, y_train, x_test, y_test, class_names)`` with uint8
``(N, C, H, W)`` images and int64 ``(N,)`` labels (the project-wide layout).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from common.data.idx import read_idx
from common.data.memory import check_fits
from common.data.splits import train_val_split
from common.errors import DataError

NPY_FILES = ("train_images.npy", "train_labels.npy", "test_images.npy", "test_labels.npy")
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")  # as in Keras' mnist.npz
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
#: Size every image-folder image is resized to when the images differ in size.
DEFAULT_FOLDER_SIZE = (64, 64)
#: Most classes a label file may imply (labels 0..K-1) when no class names come with it: a stray
#: label of 2**40 must not make a model with a trillion outputs.
MAX_NUMBERED_CLASSES = 1000
# train-images-idx3-ubyte.gz, t10k-labels.idx1-ubyte, test-images-idx3-ubyte ...
_IDX_NAME = re.compile(r"^(train|t10k|test)[-_.](images|labels)[-_.]idx[13][-_.]ubyte(\.gz)?$")


# ----------------------------------------------------------------------------- conversions
def to_nchw_uint8(images: np.ndarray, name: str) -> np.ndarray:
    """Images as ``(N, H, W)``, ``(N, H, W, C)``, ``(N, C, H, W)`` or square-flat ``(N, D)`` ->
    uint8 ``(N, C, H, W)``.  Floats in [0, 1] are scaled to 0..255."""
    x = np.asarray(images)
    if x.ndim == 2:
        side = int(round(np.sqrt(x.shape[1])))
        if side * side != x.shape[1]:
            raise DataError(f"{name}: flat images of {x.shape[1]} values are not square; "
                            "save them as (N, H, W) or (N, C, H, W)")
        x = x.reshape(len(x), 1, side, side)
    elif x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4:
        if x.shape[1] not in (1, 3) and x.shape[3] in (1, 3):
            x = x.transpose(0, 3, 1, 2)  # NHWC -> NCHW
        elif x.shape[1] not in (1, 3):
            raise DataError(f"{name}: shape {x.shape} has neither 1 nor 3 channels first or last")
    else:
        raise DataError(f"{name}: expected images of 2 to 4 dimensions, got shape {x.shape}")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if x.dtype.kind not in "fiu":
        raise DataError(f"{name}: images must be numbers, got dtype {x.dtype}")
    x = x.astype(np.float64)
    bad = int(np.count_nonzero(~np.isfinite(x)))
    if bad:
        raise DataError(f"{name}: {bad} of {x.size} pixel values are NaN or infinite; "
                        "fix or remove those images")
    if x.size and (x.min() < 0 or x.max() > 255):
        raise DataError(f"{name}: pixel values must lie in [0, 1] or [0, 255], "
                        f"found [{x.min():g}, {x.max():g}]")
    if x.dtype.kind == "f" and x.size and x.max() <= 1.0:
        x = x * 255.0
    return np.ascontiguousarray(np.round(x).astype(np.uint8))


def to_int_labels(labels: np.ndarray, name: str, max_classes: int = MAX_NUMBERED_CLASSES) -> np.ndarray:
    """Integer labels ``(N,)`` or ``(N, 1)``, or one-hot rows ``(N, K)`` -> int64 ``(N,)``.

    Labels must be whole numbers in ``[0, max_classes)``; the error names the file (``name``).
    """
    y = np.asarray(labels)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 2:
        if not (np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all()):
            raise DataError(f"{name}: 2-D labels must be one-hot rows (a single 1 per row)")
        return y.argmax(axis=1).astype(np.int64)
    if y.ndim != 1:
        raise DataError(f"{name}: labels must be (N,) integers or (N, K) one-hot, got shape {y.shape}")
    if y.dtype.kind not in "fiub":
        raise DataError(f"{name}: labels must be numbers, got dtype {y.dtype}")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise DataError(f"{name}: labels must be whole numbers, found NaN or infinity")
    if y.dtype.kind == "f" and not np.all(y == np.round(y)):
        raise DataError(f"{name}: labels must be whole numbers")
    if y.size and y.min() < 0:
        raise DataError(f"{name}: labels must be >= 0, found {y.min():g}")
    if y.size and y.max() >= max_classes:
        raise DataError(f"{name}: label {y.max():g} is too large; labels must be class numbers "
                        f"0..K-1 with K <= {max_classes} (name the classes with an image folder for more)")
    return y.astype(np.int64)


def _check_pair(x: np.ndarray, y: np.ndarray, what: str) -> None:
    if len(x) != len(y):
        raise DataError(f"{what}: {len(x)} images but {len(y)} labels")


def _numbered_classes(*ys: np.ndarray) -> list[str]:
    top = max(int(y.max()) for y in ys if y.size) if any(y.size for y in ys) else 0
    return [str(i) for i in range(top + 1)]


# ----------------------------------------------------------------------------- loaders
def find_idx_files(directory: Path) -> dict[str, Path] | None:
    """The four IDX files in ``directory`` keyed ``train_images`` ... ``test_labels``, or None."""
    found = {}
    for p in Path(directory).iterdir():
        m = _IDX_NAME.match(p.name)
        if m and p.is_file():
            split = "train" if m.group(1) == "train" else "test"
            key = f"{split}_{m.group(2)}"
            if key not in found or p.suffix == ".gz":  # prefer the gzipped copy, as published
                found[key] = p
    return found if len(found) == 4 else None


def load_idx_dir(directory: Path):
    files = find_idx_files(directory)
    if files is None:
        raise DataError(f"{directory} does not hold the four IDX files (train-images-idx3-ubyte, "
                        "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte)")
    arrays = {k: read_idx(p) for k, p in files.items()}
    x_train = to_nchw_uint8(arrays["train_images"], str(files["train_images"]))
    x_test = to_nchw_uint8(arrays["test_images"], str(files["test_images"]))
    y_train = to_int_labels(arrays["train_labels"], str(files["train_labels"]))
    y_test = to_int_labels(arrays["test_labels"], str(files["test_labels"]))
    _check_pair(x_train, y_train, "IDX training files")
    _check_pair(x_test, y_test, "IDX test files")
    return x_train, y_train, x_test, y_test, _numbered_classes(y_train, y_test)


def _arrays_to_dataset(raw: dict, where: str, names: dict | None = None):
    """``names`` maps x_train... to the file each array came from (for error messages)."""
    names = names or {"x_train": f"{where} training images", "x_test": f"{where} test images",
                      "y_train": f"{where} training labels", "y_test": f"{where} test labels"}
    x_train = to_nchw_uint8(raw["x_train"], names["x_train"])
    x_test = to_nchw_uint8(raw["x_test"], names["x_test"])
    y_train = to_int_labels(raw["y_train"], names["y_train"])
    y_test = to_int_labels(raw["y_test"], names["y_test"])
    _check_pair(x_train, y_train, f"{where} training set")
    _check_pair(x_test, y_test, f"{where} test set")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(f"{where}: training images are {x_train.shape[1:]} but test images "
                        f"are {x_test.shape[1:]}")
    return x_train, y_train, x_test, y_test, _numbered_classes(y_train, y_test)


def load_npy_dir(directory: Path):
    """``train_images.npy, train_labels.npy, test_images.npy, test_labels.npy`` (previous NNOTT)."""
    directory = Path(directory)
    missing = [f for f in NPY_FILES if not (directory / f).is_file()]
    if missing:
        raise DataError(f"{directory} is missing {', '.join(missing)}")
    try:
        loaded = [np.load(directory / f, allow_pickle=False) for f in NPY_FILES]
    except ValueError as exc:
        raise DataError(f"could not read the .npy files in {directory} ({exc})") from exc
    names = {key: str(directory / f) for key, f in zip(NPZ_KEYS, NPY_FILES)}
    return _arrays_to_dataset(dict(zip(NPZ_KEYS, loaded)), str(directory), names)


def load_npz(path: Path):
    """An ``.npz`` with ``x_train, y_train, x_test, y_test`` (Keras' ``mnist.npz`` layout)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in NPZ_KEYS if k not in f]
            if missing:
                raise DataError(f"{path} lacks the arrays {', '.join(missing)} "
                                "(expected x_train, y_train, x_test, y_test)")
            raw = {k: f[k] for k in NPZ_KEYS}
    except (ValueError, OSError) as exc:
        raise DataError(f"could not read {path} as .npz ({exc})") from exc
    return _arrays_to_dataset(raw, str(path))


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _image_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def is_image_folder(root: Path) -> bool:
    """True when ``root`` has class sub-folders holding images (directly or under train/)."""
    top = root / "train" if (root / "train").is_dir() else root
    return any(_image_files(d) for d in _class_dirs(top))


def _read_images(files: list[Path], size: tuple[int, int], mode: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    out = np.empty((len(files), size[0], size[1], 3 if mode == "RGB" else 1), dtype=np.uint8)
    for i, f in enumerate(files):
        try:
            with Image.open(f) as img:
                img = img.convert(mode)
                if img.size != (size[1], size[0]):
                    img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
                out[i] = np.asarray(img).reshape(size[0], size[1], -1)
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"{f} is not a readable image ({exc}); remove it from the folder") from exc
    return out.transpose(0, 3, 1, 2)


def _image_meta(files: list[Path]) -> tuple[set, bool]:
    """The set of (H, W) sizes and whether any image has colour."""
    from PIL import Image

    sizes, colour = set(), False
    for f in files:
        try:
            with Image.open(f) as img:
                sizes.add((img.height, img.width))
                colour |= img.mode not in ("1", "L", "LA", "I", "I;16", "F")
        except OSError as exc:
            raise DataError(f"{f} is not a readable image ({exc}); remove it from the folder") from exc
    return sizes, colour


def load_image_folder(root: Path, seed: int = 0, image_size: tuple[int, int] | None = None,
                      test_fraction: float = 0.2):
    """``root/<class>/*.png|jpg`` or ``root/train/<class>/`` + ``root/test/<class>/``.

    Without a train/test split, a seeded stratified ``test_fraction`` is held out as test.
    Images become RGB if any is in colour, else grayscale; they are resized to ``image_size``,
    or, when their sizes differ and none is given, to DEFAULT_FOLDER_SIZE.
    """
    root = Path(root)
    split = (root / "train").is_dir() and (root / "test").is_dir()
    parts = {"train": root / "train", "test": root / "test"} if split else {"all": root}
    classes = [d.name for d in _class_dirs(parts["train" if split else "all"])]
    if not classes:
        raise DataError(f"{root} has no class folders; expected {root}/<class>/*.png")
    listing = {}
    for part, directory in parts.items():
        files, labels = [], []
        for label, cls in enumerate(classes):
            found = _image_files(directory / cls) if (directory / cls).is_dir() else []
            files += found
            labels += [label] * len(found)
        if not files:
            raise DataError(f"{directory} holds no images in its class folders ({', '.join(classes)})")
        listing[part] = (files, np.asarray(labels, dtype=np.int64))
    sizes, colour = _image_meta([f for files, _ in listing.values() for f in files])
    if image_size is None:
        image_size = next(iter(sizes)) if len(sizes) == 1 else DEFAULT_FOLDER_SIZE
    mode = "RGB" if colour else "L"
    n = sum(len(files) for files, _ in listing.values())
    check_fits(n * (3 if colour else 1) * image_size[0] * image_size[1],
               f"reading the {n} images of {root} at {image_size[0]}x{image_size[1]}",
               "use a smaller --image-size or fewer images")
    arrays = {part: (_read_images(files, image_size, mode), y) for part, (files, y) in listing.items()}
    if split:
        (x_train, y_train), (x_test, y_test) = arrays["train"], arrays["test"]
    else:
        x, y = arrays["all"]
        x_train, y_train, x_test, y_test = train_val_split(x, y, test_fraction, seed)
    return x_train, y_train, x_test, y_test, classes
