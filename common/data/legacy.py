"""The previous NNOTT's ``--data-dir``: a folder of ``.npy`` files, not a download cache.

The previous NNOTT read ``train_images.npy, train_labels.npy, test_images.npy, test_labels.npy``
from ``--data-dir``; here ``--data-dir`` is where downloads and generated datasets are cached.
Two rules keep an old command working and a user's folder clean:

* a ``--data-dir`` that holds the four ``.npy`` files (and no ``--dataset``) *is* the dataset;
* a cache is never written into a folder that holds a user's data files: the default cache
  (``$NNOTT_DATA`` or ``~/.cache/nnott``) is used instead.

Each rule says what it did in one line, once per process (a quickstart's sub-runs stay quiet).
"""
from __future__ import annotations

from pathlib import Path

from common.data.local import IMAGE_SUFFIXES, NPY_FILES, find_idx_files

_said: set = set()

#: Data-file suffixes that mark a folder as a user's (a cache keeps its files in sub-folders).
USER_DATA_SUFFIXES = {".npy", ".npz", ".gz", ".ubyte", *IMAGE_SUFFIXES}


def is_old_npy_folder(folder) -> bool:
    """True when ``folder`` holds the previous NNOTT's four ``.npy`` files."""
    folder = Path(folder).expanduser()
    return folder.is_dir() and all((folder / name).is_file() for name in NPY_FILES)


def holds_user_data(folder) -> bool:
    """True when ``folder`` has data files of its own at the top (``.npy``, ``.npz``, IDX, images)."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        return False
    if find_idx_files(folder) is not None:
        return True
    return any(p.is_file() and (p.suffix.lower() in USER_DATA_SUFFIXES or "idx" in p.name)
               for p in folder.iterdir())


def _say_once(text: str, print_fn) -> None:
    if text not in _said:
        _said.add(text)
        print_fn(text)


def resolve_old_data_dir(dataset, data_dir, print_fn=print):
    """(dataset, cache dir) for a run, after the two rules above; ``dataset`` None = not given.

    Returns the inputs unchanged for an ordinary cache folder.
    """
    if data_dir is None:
        return dataset, data_dir
    folder = Path(data_dir).expanduser()
    if dataset is not None and Path(str(dataset)).expanduser().resolve() == folder.resolve():
        return dataset, None                  # the folder is the dataset: cache elsewhere, nothing to say
    if dataset is None and is_old_npy_folder(folder):
        _say_once(f"[nnott] --data-dir {data_dir} holds the previous NNOTT's .npy files: using them as the "
                 f"dataset (the same as --dataset {data_dir}); downloads are cached elsewhere", print_fn)
        return str(folder), None
    if holds_user_data(folder):
        _say_once(f"[nnott] --data-dir {data_dir} holds data files of its own: no cache is written there; "
                 "using the default cache ($NNOTT_DATA or ~/.cache/nnott). To train on those files, "
                 f"pass --dataset {data_dir}", print_fn)
        return dataset, None
    return dataset, data_dir
