"""The program name a launcher's --help and errors show: the tier's, not a bare ``main.py``."""
from __future__ import annotations

import sys
from pathlib import Path


def launcher_prog(folder: str) -> str:
    """'convolutional/main.py' when run as that file, the console script's name (nnott-cnn) otherwise.

    Three launchers are all called ``main.py``; argparse alone would print ``usage: main.py`` for
    each, which tells a reader nothing about which tier they are in.
    """
    name = Path(sys.argv[0]).name
    return f"{folder}/{name}" if name == "main.py" else name
