"""The options table of the PyTorch interop page: made from the constructors, every twin real."""
import pytest

from convolutional.pytorch_options import TWINS, options, options_table


def test_the_table_lists_every_layer_and_the_options_its_constructor_takes():
    table = options_table()
    lines = table.splitlines()
    assert len(lines) == 2 + len(TWINS)
    conv = next(line for line in lines if line.startswith("| `Conv2D`"))
    assert "`padding_mode='zeros'`" in conv and "`init*='kaiming'`" in conv
    pool = next(line for line in lines if line.startswith("| `MaxPool2D`"))
    assert "`ceil_mode=False`" in pool and "`dilation=1`" in pool
    prelu = [o for cls, _, _ in TWINS if cls.__name__ == "PReLU" for o in options(cls)]
    assert prelu == ["num_parameters=1", "init=0.25"]  # PyTorch's init, not a weight scheme


def test_every_named_twin_exists_in_pytorch():
    torch = pytest.importorskip("torch", reason="needs PyTorch to look the twins up")
    for cls, name, _ in TWINS:
        if name.startswith("nn."):
            module = name[3:].split("(")[0].split(" ")[0]
            assert hasattr(torch.nn, module), (cls.__name__, name)
