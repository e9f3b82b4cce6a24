"""``--distributed --gpu`` without a GPU: which device each rank takes (a stand-in CuPy module),
and the gradient all-reduce's round trip through host memory under the strict-device backend."""
import sys
from argparse import Namespace

import numpy as np
import pytest

from common import distributed
from common.backend import StrictArray, to_device, to_numpy


@pytest.mark.parametrize("local_rank,local_size,count,device,shared", [
    (0, 2, 2, 0, False), (1, 2, 2, 1, False), (1, 2, 8, 1, False),   # one GPU each
    (0, 4, 2, 0, True), (3, 4, 2, 1, True), (2, 3, 1, 0, True),      # more ranks than GPUs
])
def test_each_local_rank_takes_gpu_local_rank_mod_count(local_rank, local_size, count, device, shared):
    got, note = distributed.gpu_for_rank(local_rank, local_size, count)
    assert got == device
    assert (note is not None) == shared
    if shared:
        assert note.startswith(f"note: {local_size} ranks share {count} GPU")
        assert f"up to {-(-local_size // count)} ranks split one GPU" in note


class FakeCupy:
    """What choose_gpu uses of CuPy: the device count and ``Device(i).use()``, recorded."""

    def __init__(self, count):
        self.used = []
        fake = self

        class Runtime:
            @staticmethod
            def getDeviceCount():
                if isinstance(count, Exception):
                    raise count
                return count

        class Device:
            def __init__(self, index):
                self.index = index

            def use(self):
                fake.used.append(self.index)

        self.cuda = Namespace(runtime=Runtime, Device=Device)


class FakeComm:
    def __init__(self, rank, size, local_rank=None, local_size=None):
        self.rank, self.size = rank, size
        self.local_rank = rank if local_rank is None else local_rank
        self.local_size = size if local_size is None else local_size
        self.is_root = rank == 0


def test_choose_gpu_uses_the_rank_s_device_and_rank_0_alone_notes_sharing(capsys):
    for rank in range(3):
        cupy = FakeCupy(2)
        assert distributed.choose_gpu(FakeComm(rank, 3), cupy=cupy) == rank % 2
        assert cupy.used == [rank % 2]
        out = capsys.readouterr().out
        assert (out.count("note: 3 ranks share 2 GPUs") == 1) if rank == 0 else out == ""
    cupy = FakeCupy(4)
    assert distributed.choose_gpu(FakeComm(0, 2), cupy=cupy) == 0 and capsys.readouterr().out == ""


@pytest.mark.parametrize("count", [0, RuntimeError("no CUDA driver")])
def test_choose_gpu_without_a_device_leaves_the_choice_to_the_cpu_fallback(count):
    cupy = FakeCupy(count)
    assert distributed.choose_gpu(FakeComm(1, 2), cupy=cupy) is None and cupy.used == []


def test_from_args_picks_the_device_before_the_backend_starts(monkeypatch):
    """vectorized.data_parallel.from_args (called before backend.use_gpu) sets the device."""
    from vectorized import data_parallel

    cupy = FakeCupy(2)
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setattr(distributed, "world", lambda: FakeComm(1, 2))
    monkeypatch.setattr(distributed, "setup_rank", lambda comm: 1)
    group = data_parallel.from_args(Namespace(distributed=True, gpu=True, sync_bn=False))
    assert group.rank == 1 and cupy.used == [1]
    group = data_parallel.from_args(Namespace(distributed=True, gpu=False, sync_bn=False))
    assert cupy.used == [1]  # no --gpu: no device chosen


class HostOnlyPair(FakeComm):
    """Rank 0 of two; the other rank's buffer is ``other``. Refuses anything but a host array,
    as an MPI that cannot read GPU memory must be given."""

    def __init__(self, other):
        super().__init__(0, 2)
        self.other, self.seen = other, []

    def allreduce_sum(self, array):
        assert type(array) is np.ndarray, type(array)  # host memory, never the device array
        self.seen.append(array.copy())
        array += self.other
        return array


def test_gradient_all_reduce_goes_through_the_host_and_back_to_the_device(strict_backend):
    from vectorized.data_parallel import DataParallel
    from vectorized.layers import Linear

    layer = Linear(3, 2).astype(np.float64)
    params = list(layer.parameters())
    grads = [np.arange(p.data.size, dtype=np.float64).reshape(p.data.shape) + 1 for p in params]
    for p, g in zip(params, grads):
        p.grad = to_device(g)
    size = sum(g.size for g in grads)
    # the other rank: shard of 5 images, shard-mean gradient 10 * ours; no Ctrl-C there
    other = np.concatenate([5 * 10 * g.ravel() for g in grads] + [np.array([5.0, 0.0])])
    group = DataParallel(HostOnlyPair(other))
    assert group.shard(9) == slice(0, 4)  # our shard: 4 of the 9 images
    group.average_gradients(params, interrupt=False)
    assert group.comm.seen[0].shape == (size + 2,) and group.comm.seen[0][-2:].tolist() == [4.0, 0.0]
    for p, g in zip(params, grads):
        assert isinstance(p.grad, StrictArray)  # back on the device, as the optimizer needs it
        np.testing.assert_allclose(to_numpy(p.grad), (4 * g + 5 * 10 * g) / 9)  # the 9-image mean
    assert group.stop_requested is False
