"""HDF5 checkpoints: exact round trips, atomic writes, clear errors, compatibility messages."""
import h5py
import numpy as np
import pytest

from common import checkpoint as ck
from common.checkpoint import Checkpoint, check_compatible, load_checkpoint, save_checkpoint
from common.errors import CheckpointError, UserError


def make_ckpt(**changes) -> Checkpoint:
    rng = np.random.default_rng(0)
    fields = dict(
        model_state={"features.0.weight": rng.standard_normal((4, 3)).astype(np.float32),
                     "features.0.bias": np.zeros(4, np.float32),
                     "bn.running_var": rng.random(4)},
        optimizer_state={"name": "adam", "t": 7, "lr": 1e-3, "amsgrad": False,
                         "m": [rng.standard_normal((4, 3)).astype(np.float32), np.zeros(4, np.float32)],
                         "slow": None},
        scheduler_state={"name": "cosine", "last_epoch": 3},
        epoch=3, step=120,
        rng_state={"numpy": np.random.get_state()},
        history={"loss": [2.3, 1.1, 0.7], "val_acc": [0.5, 0.7, 0.8]},
        config={"tier": "vectorized", "architecture": "mlp", "input_shape": [1, 28, 28], "num_classes": 10},
    )
    fields.update(changes)
    return Checkpoint(**fields)


def assert_same(a, b):
    """Deep equality that also checks Python types and array dtypes, bitwise."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    elif isinstance(a, (np.ndarray, np.generic)):
        assert a.dtype == b.dtype and np.shape(a) == np.shape(b)
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    elif isinstance(a, float) and a != a:
        assert b != b
    else:
        assert a == b


def test_every_state_kind_round_trips(tmp_path):
    odd = {
        "nested": {"per_param": [[np.arange(3, dtype=np.int64), np.ones((2, 2), np.float64)], []],
                   "empty_dict": {}, "empty_list": [], "empty_tuple": ()},
        "tuple_state": ("MT19937", np.arange(5, dtype=np.uint32), 3, 0, 0.0),
        "scalars": [True, False, None, 0, -5, 2**100, -(2**70), 1.5, float("inf"), float("nan")],
        "floats": [0.1, 1e-300, -2.5], "ints": [1, 2, 3],
        "numpy_scalars": [np.float32(0.1), np.int16(-3), np.bool_(True)],
        "text": ["", "ünïcødé ✓ 数字", "a/b"], "raw": b"\x00\x01",
        "arrays": [np.zeros((0, 3)), np.array(2.5), np.array([True, False]), np.float16([1, 2])],
        7: "int key", "": "empty key", "__dunder": 1, "#hash": 2, "a/b": 3,
    }
    ckpt = make_ckpt(extra=odd, rng_state={"numpy": np.random.get_state(), "odd": odd})
    save_checkpoint(tmp_path / "c.h5", ckpt)
    back = load_checkpoint(tmp_path / "c.h5")
    for name in ("model_state", "optimizer_state", "scheduler_state", "rng_state", "history", "extra"):
        assert_same(getattr(ckpt, name), getattr(back, name))
    assert (back.epoch, back.step) == (3, 120)
    assert back.config == ckpt.config
    assert back.path == tmp_path / "c.h5"


def test_config_is_json_with_tuples_and_arrays_as_lists(tmp_path):
    cfg = {"input_shape": (3, 32, 32), "normalization": {"mean": np.array([0.5, 0.4]), "std": np.float32(0.25)},
           "args": {"data_dir": tmp_path}}
    back = load_checkpoint(save_checkpoint(tmp_path / "c.h5", make_ckpt(config=cfg)))
    assert back.config == {"input_shape": [3, 32, 32], "normalization": {"mean": [0.5, 0.4], "std": 0.25},
                           "args": {"data_dir": str(tmp_path)}}


def test_save_creates_parent_folders_and_reports_nonfinite_history(tmp_path):
    path = save_checkpoint(tmp_path / "a" / "b" / "last.h5", make_ckpt(history={"loss": [float("nan")]}))
    assert path.exists()
    assert np.isnan(load_checkpoint(path).history["loss"][0])


def test_device_arrays_are_copied_to_host(tmp_path, strict_backend):
    from common.backend import to_device

    ckpt = make_ckpt(optimizer_state={"m": [to_device(np.arange(3.0))]})
    back = load_checkpoint(save_checkpoint(tmp_path / "c.h5", ckpt))
    assert isinstance(back.optimizer_state["m"][0], np.ndarray)
    assert back.optimizer_state["m"][0].tolist() == [0.0, 1.0, 2.0]


# --------------------------------------------------------------------------- atomic writes
def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name != "c.h5")


def test_unserialisable_object_leaves_previous_file(tmp_path):
    path = save_checkpoint(tmp_path / "c.h5", make_ckpt())
    with pytest.raises(TypeError, match="optimizer/bad: cannot store an object of type object"):
        save_checkpoint(path, make_ckpt(epoch=4, optimizer_state={"bad": object()}))
    assert load_checkpoint(path).epoch == 3
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_crash_mid_write_leaves_previous_file(tmp_path, monkeypatch, error):
    path = save_checkpoint(tmp_path / "c.h5", make_ckpt())
    calls = {"n": 0}
    real = h5py.Group.create_dataset

    def failing(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise error
        return real(self, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", failing)
    expected = CheckpointError if isinstance(error, OSError) else KeyboardInterrupt
    with pytest.raises(expected):
        save_checkpoint(path, make_ckpt(epoch=9))
    monkeypatch.undo()
    assert load_checkpoint(path).epoch == 3
    assert _leftovers(tmp_path) == []


def test_unwritable_destination_is_a_checkpoint_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(CheckpointError, match="cannot be written: .*file is a file, not a folder"):
        save_checkpoint(blocker / "c.h5", make_ckpt())


# --------------------------------------------------------------------------- bad files
def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.h5")


@pytest.mark.parametrize("content, message", [(b"", "is empty"), (b"\x00garbage" * 100, "is not an HDF5 file")])
def test_garbage_and_empty_files(tmp_path, content, message):
    path = tmp_path / "bad.h5"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)


def test_truncated_file(tmp_path):
    path = save_checkpoint(tmp_path / "c.h5", make_ckpt())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(path)


def test_foreign_hdf5_file(tmp_path):
    path = tmp_path / "keras.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("weights", data=np.zeros(3))
    with pytest.raises(CheckpointError, match="not an NNOTT checkpoint"):
        load_checkpoint(path)


def test_newer_format_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "c.h5", make_ckpt())
    with h5py.File(path, "a") as f:
        f.attrs["format_version"] = ck.CHECKPOINT_FORMAT_VERSION + 1
    with pytest.raises(CheckpointError, match="newer"):
        load_checkpoint(path)


def test_checkpoint_error_is_a_user_error():
    assert issubclass(CheckpointError, UserError)


# --------------------------------------------------------------------------- compatibility
SHAPES = {"features.0.weight": (4, 3), "features.0.bias": (4,), "bn.running_var": (4,)}
CONFIG = {"tier": "vectorized", "architecture": "mlp", "input_shape": (1, 28, 28), "num_classes": 10}


def test_compatible_checkpoint_passes():
    check_compatible(make_ckpt(), model_shapes=SHAPES, config=dict(CONFIG, dataset="other"))


@pytest.mark.parametrize("change, message", [
    ({"tier": "convolutional"}, "tier is 'vectorized' in the checkpoint but 'convolutional' here"),
    ({"architecture": "resnet18"}, "architecture is 'mlp' in the checkpoint but 'resnet18' here"),
    ({"num_classes": 100}, "num_classes is 10 in the checkpoint but 100 here"),
    ({"input_shape": (3, 32, 32)}, "input_shape is 1x28x28 in the checkpoint but 3x32x32 here"),
])
def test_config_mismatches(change, message):
    with pytest.raises(CheckpointError, match=message):
        check_compatible(make_ckpt(), model_shapes=SHAPES, config=dict(CONFIG, **change))


def test_tensor_mismatches_are_all_reported_at_once():
    shapes = {"features.0.weight": (8, 3), "features.0.bias": (4,), "head.weight": (10, 4)}
    with pytest.raises(CheckpointError) as info:
        check_compatible(make_ckpt(), model_shapes=shapes, config=dict(CONFIG, architecture="cnn"))
    msg = str(info.value)
    assert "architecture is 'mlp'" in msg
    assert "1 missing tensor(s): head.weight" in msg
    assert "1 unexpected tensor(s): bn.running_var" in msg
    assert "features.0.weight (4, 3) vs (8, 3)" in msg
    assert "\n" not in msg


def test_long_lists_are_truncated():
    shapes = {f"layer{i}.weight": (1,) for i in range(40)}
    with pytest.raises(CheckpointError, match=r"40 missing tensor\(s\): layer0.weight, .* and 35 more"):
        check_compatible(make_ckpt(), model_shapes=shapes)


def test_mismatch_message_names_the_file(tmp_path):
    loaded = load_checkpoint(save_checkpoint(tmp_path / "c.h5", make_ckpt()))
    with pytest.raises(CheckpointError, match=f"checkpoint {tmp_path / 'c.h5'} does not fit"):
        check_compatible(loaded, model_shapes={})


# --------------------------------------------------------------------------- property test
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)
_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), _text)
_arrays = st.sampled_from([np.float32, np.float64, np.int64, np.uint8]).flatmap(
    lambda dt: st.lists(st.integers(0, 100), max_size=5).map(lambda v: np.array(v, dtype=dt)))
_state = st.recursive(
    st.one_of(_scalars, _arrays),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.lists(inner, max_size=3).map(tuple),
                            st.dictionaries(st.one_of(_text, st.integers(0, 9)), inner, max_size=4)),
    max_leaves=12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(state=st.dictionaries(_text, _state, max_size=4))
def test_any_nested_state_round_trips(tmp_path, state):
    path = save_checkpoint(tmp_path / "p.h5", make_ckpt(optimizer_state=state))
    assert_same(state, load_checkpoint(path).optimizer_state)
