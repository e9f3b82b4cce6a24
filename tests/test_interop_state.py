"""PyTorch-style state dicts without PyTorch: every mismatch reported at once, optional BN counters."""
import numpy as np
import pytest

from common.errors import UserError
from convolutional.architectures import build_model
from convolutional.interop import export_torch_state_dict, load_torch_state_dict


def test_load_reports_every_mismatch_at_once():
    model = build_model("lenet", (1, 28, 28), 10)
    state = export_torch_state_dict(model)
    del state["features.0.bias"]
    state["classifier.4.weight"] = np.zeros((7, 84), np.float32)
    state["extra.weight"] = np.zeros(3, np.float32)
    with pytest.raises(UserError) as err:
        load_torch_state_dict(model, state)
    message = str(err.value)
    assert "features.0.bias" in message and "classifier.4.weight" in message and "extra.weight" in message
    assert "\n" not in message


def test_num_batches_tracked_is_optional():
    """A state dict without BN's counters (e.g. from an old export) still loads."""
    model = build_model("baseline", (1, 28, 28), 10)
    state = {k: v for k, v in export_torch_state_dict(model).items() if not k.endswith("num_batches_tracked")}
    fresh = build_model("baseline", (1, 28, 28), 10)
    load_torch_state_dict(fresh, state)
    for key, value in state.items():
        np.testing.assert_array_equal(fresh.state_dict()[key], value)
