"""The project's layout read from its code: which files teach, which tune, and which way imports go.

    python scripts/layout_report.py            # the tree, the package imports, the reference layers' sizes
    python scripts/layout_report.py --png F    # also draw the package diagram to F

The tutorial's design page runs the same functions when it is built, so its diagram and tables
always describe the code as it is.
"""
from __future__ import annotations

import argparse
import ast
import inspect
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: Packages in the order of the dependency direction (each imports only those to its left,
#: except the engine and parity, which sit above the tiers they serve).
PACKAGES = ("common", "scalar", "vectorized", "convolutional", "parity", "engine")
ROLE = {"common": "shared", "scalar": "teaches", "vectorized": "teaches", "convolutional": "teaches",
        "parity": "teaches", "engine": "tunes"}


def python_files(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts)


def imported_packages(path: Path) -> set[str]:
    """The project packages that one file imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
        found.update(n.split(".")[0] for n in names if n.split(".")[0] in PACKAGES)
    return found


def package_graph() -> Counter:
    """(from package, to package) -> how many files of the first import the second."""
    edges = Counter()
    for package in PACKAGES:
        for path in python_files(package):
            for target in imported_packages(path) - {package}:
                if path.name == "main.py" and target == "engine":
                    edges[("launchers", "engine")] += 1  # the tier launchers choose the engine
                else:
                    edges[(package, target)] += 1
    return edges


def tree() -> str:
    """Every package's files with their line counts, marked by what they are for."""
    lines = []
    for package in PACKAGES:
        lines.append(f"{package}/  ({ROLE[package]})")
        for path in python_files(package):
            rel = path.relative_to(ROOT / package)
            lines.append(f"    {str(rel):<34} {len(path.read_text(encoding='utf-8').splitlines()):>4} lines")
    return "\n".join(lines)


def _math_lines(cls) -> int:
    """Lines of the class's own forward and backward (or update, for an optimizer): the math."""
    total = 0
    for name in ("forward", "backward", "update"):
        method = cls.__dict__.get(name)
        if method is not None:
            total += len(inspect.getsourcelines(getattr(method, "reference", method))[0])
    return total


def reference_layers() -> list[tuple[str, str, int, int]]:
    """(layer, file, lines of its class, lines of its forward and backward) for every layer the
    engine accelerates and the rest of the tier-2/3 layers a student reads."""
    import convolutional as C
    from vectorized import activations, layers, losses, optim

    classes = [layers.Linear, layers.BatchNorm1d, layers.Dropout, activations.ReLU, activations.LeakyReLU,
               activations.ELU, activations.Sigmoid, activations.Tanh, activations.SiLU, activations.ReLU6,
               activations.GELU, activations.Softmax, losses.CrossEntropyLoss, C.Conv2D, C.DepthwiseConv2D,
               C.MaxPool2D, C.AvgPool2D, C.AdaptiveAvgPool2D, C.GlobalAvgPool2D, C.BatchNorm2D, C.LayerNorm2D,
               C.SqueezeExcite, C.BasicBlock, C.MBConv, C.ConvNeXtBlock, optim.SGD, optim.Adam]
    out = []
    for cls in classes:
        source, _start = inspect.getsourcelines(cls)
        out.append((cls.__name__, str(Path(inspect.getsourcefile(cls)).relative_to(ROOT)), len(source),
                    _math_lines(cls)))
    return out


def draw(path: Path) -> Path:
    """The package diagram: teaching packages in a row, the engine above them, arrows for imports."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    where = {"common": (0.5, 0.12), "scalar": (0.14, 0.45), "vectorized": (0.5, 0.45),
             "convolutional": (0.86, 0.45), "parity": (0.14, 0.8), "engine": (0.62, 0.8), "launchers": (0.9, 0.8)}
    colour = {"shared": "#e8eef7", "teaches": "#e3f3e3", "tunes": "#fbe7d0", "entry": "#f2f2f2"}
    fig, ax = plt.subplots(figsize=(8.5, 4.6))
    ax.set_axis_off()
    edges = package_graph()
    for (a, b), count in edges.items():
        (x0, y0), (x1, y1) = where[a], where[b]
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops=dict(arrowstyle="-|>", color="#555", lw=0.8 + 0.15 * min(count, 12),
                                    mutation_scale=16, shrinkA=30, shrinkB=30, connectionstyle="arc3,rad=0.08"))
    for name, (x, y) in where.items():
        role = ROLE.get(name, "entry")
        label = name + "/" if name != "launchers" else "tier main.py"
        ax.text(x, y, f"{label}\n({role})", ha="center", va="center", fontsize=10,
                bbox=dict(boxstyle="round,pad=0.5", fc=colour[role], ec="#333"))
    ax.set_title("Packages and their imports (arrow: 'imports'; width: how many files)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                epilog="example:\n  python scripts/layout_report.py --png layout.png",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--png", type=Path, default=None, metavar="FILE", help="draw the package diagram here")
    args = p.parse_args(argv)
    print(tree())
    print("\nimports between packages (files):")
    for (a, b), count in sorted(package_graph().items()):
        print(f"  {a:>13} -> {b:<13} {count}")
    print("\nreference layers (lines of the class; of its forward and backward):")
    for name, file, count, math in reference_layers():
        print(f"  {name:<18} {file:<28} {count:>4} {math:>4}")
    if args.png:
        try:
            print(f"\nwrote {draw(args.png)}")
        except OSError as exc:
            print(f"error: cannot write {args.png}: {exc.strerror}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
