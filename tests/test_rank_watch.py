"""The watcher that reports a rank which dies without a word (common/rank_watch.py), without MPI:
fake ranks are plain processes that connect to it as the real ones do."""
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from common import rank_watch
from common.checkpoint import Checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
linux_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads exit statuses in /proc (Linux)")

FAKE_RANK = """
import sys, time
sys.path.insert(0, sys.argv[1])
from common.rank_watch import link_to
link = link_to(sys.argv[2], int(sys.argv[3]))
if len(sys.argv) > 4:
    link.checkpoints(sys.argv[4])
print("connected", flush=True)
for line in sys.stdin:  # the test says what to do next: done, reported, or nothing (then it is killed)
    getattr(link, line.strip())()
    break
time.sleep(60)
"""


def wait_for_zombie(pid, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return
        time.sleep(0.01)
    raise AssertionError("the child did not end")


@linux_proc
def test_exit_status_of_a_killed_and_of_an_exited_process():
    killed = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    exited = subprocess.Popen([sys.executable, "-c", "import os; os._exit(3)"])
    try:
        killed.send_signal(signal.SIGKILL)
        wait_for_zombie(killed.pid), wait_for_zombie(exited.pid)
        assert rank_watch.exit_status(killed.pid) == (9, None)
        assert rank_watch.exit_status(exited.pid) == (None, 3)
    finally:
        killed.wait(), exited.wait()
    assert rank_watch.exit_status(killed.pid, wait_s=0.01) == (None, None)  # reaped: nothing left to read


def test_causes_in_words():
    assert rank_watch.describe_cause(9, None) == "killed by signal 9, SIGKILL"
    assert rank_watch.describe_cause(None, 3) == "exited with code 3 in the middle of the run"
    assert "os._exit" in rank_watch.describe_cause(None, None)


def tiny_checkpoint(path, epoch):
    save_checkpoint(path, Checkpoint(model_state={"w": np.ones(3, np.float32)}, optimizer_state={},
                                     scheduler_state={}, epoch=epoch, step=4 * epoch, rng_state={},
                                     history={"loss": [1.0] * epoch}, config={}))


def test_newest_checkpoint_prefers_last_and_says_when_it_does_not_load(tmp_path):
    assert rank_watch.newest_checkpoint(tmp_path) == ("no checkpoint was written before it died", None)
    assert rank_watch.newest_checkpoint(None)[1] is None
    tiny_checkpoint(tmp_path / "last.h5", 2)
    tiny_checkpoint(tmp_path / "best.h5", 1)  # written later, but last.h5 is the one to resume
    text, path = rank_watch.newest_checkpoint(tmp_path)
    assert path.name == "last.h5" and text.endswith("last.h5 (intact, epoch 2)")
    (tmp_path / "last.h5").write_bytes(b"half a file")
    text, path = rank_watch.newest_checkpoint(tmp_path)
    assert path is None and "(does not load:" in text


class Job:
    """A watcher and two fake ranks, as ``mpiexec -n 2`` on one machine would have them."""

    def __init__(self, checkpoints=None):
        self.folder = tempfile.mkdtemp(prefix="nnott-test-ranks-")
        self.watcher = subprocess.Popen([sys.executable, str(ROOT / "common" / "rank_watch.py"), self.folder,
                                         "2", "2", "1", "mpiexec -n 2 python train.py --epochs 9"],
                                        stderr=subprocess.PIPE, text=True)
        extra = [str(checkpoints)] if checkpoints else []
        self.ranks = [subprocess.Popen([sys.executable, "-c", FAKE_RANK, str(ROOT), self.folder, str(r)]
                                       + (extra if r == 0 else []), stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, text=True)
                      for r in range(2)]
        for proc in self.ranks:
            assert proc.stdout.readline().strip() == "connected"

    def tell(self, rank, what):
        self.ranks[rank].stdin.write(what + "\n")
        self.ranks[rank].stdin.flush()

    def finish(self, timeout=20):
        try:
            _, err = self.watcher.communicate(timeout=timeout)
        finally:
            for proc in self.ranks:
                proc.kill()
                proc.wait()
            if self.watcher.poll() is None:
                self.watcher.kill()
        assert not Path(self.folder).exists()  # the watcher removes its socket folder
        return self.watcher.returncode, err


def test_a_killed_rank_is_named_in_one_line_with_the_checkpoint_and_the_resume_command(tmp_path):
    tiny_checkpoint(tmp_path / "last.h5", 3)
    job = Job(checkpoints=tmp_path)
    job.ranks[1].send_signal(signal.SIGKILL)
    start = time.monotonic()
    code, err = job.finish()
    assert time.monotonic() - start < 10 and code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: rank 1 of 2 died (")
    if Path("/proc/self/stat").exists():
        assert "killed by signal 9, SIGKILL" in lines[0]
    assert f"newest checkpoint: {tmp_path / 'last.h5'} (intact, epoch 3)" in lines[0]
    assert lines[0].endswith(f"resume with: mpiexec -n 2 python train.py --epochs 9 --resume {tmp_path / 'last.h5'}")


@pytest.mark.parametrize("ending", ["done", "reported"])
def test_ranks_that_end_normally_or_report_themselves_leave_the_watcher_silent(ending):
    job = Job()
    for rank in (0, 1):
        job.tell(rank, ending)
    time.sleep(0.5)
    for proc in job.ranks:  # after "done" a rank's process ends; mpiexec's clean-up may kill it
        proc.kill()
    code, err = job.finish()
    assert code == 0 and err == ""


@pytest.mark.skipif(not Path("/proc/self/wchan").exists(), reason="the order of closed connections is epoll's (Linux)")
def test_a_late_watcher_still_names_the_rank_that_died_first():
    """The watcher is stopped while rank 1 dies and, 0.2 s later, rank 0 (as mpiexec kills it):
    when it wakes, both connections are closed, and the first to close is reported."""
    job = Job()
    wchan = Path(f"/proc/{job.watcher.pid}/wchan")
    deadline = time.monotonic() + 10
    while wchan.read_text() != "do_epoll_wait" and time.monotonic() < deadline:  # hellos read, now waiting
        time.sleep(0.01)
    job.watcher.send_signal(signal.SIGSTOP)
    try:
        job.ranks[1].send_signal(signal.SIGKILL)
        job.ranks[1].wait()
        time.sleep(0.2)
        job.ranks[0].send_signal(signal.SIGKILL)
        job.ranks[0].wait()
    finally:
        job.watcher.send_signal(signal.SIGCONT)
    code, err = job.finish()
    assert code == 1 and err.strip().startswith("error: rank 1 of 2 died ("), err
    assert rank_watch.UNKNOWN_CAUSE in err  # both were collected before the watcher woke


def test_wait_until_read_returns_once_the_reader_has_taken_the_line(tmp_path):
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, b"error: the line\n")
        threading.Timer(0.3, os.read, (read_end, 100)).start()  # mpiexec reads it a little later
        start = time.monotonic()
        rank_watch.wait_until_read(write_end, timeout_s=10)
        assert 0.2 < time.monotonic() - start < 5
        os.write(write_end, b"nobody reads this\n")
        start = time.monotonic()
        rank_watch.wait_until_read(write_end, timeout_s=0.3)  # bounded when nobody reads
        assert 0.25 < time.monotonic() - start < 5
    finally:
        os.close(read_end), os.close(write_end)
    with open(tmp_path / "log.txt", "w") as f:  # not a pipe: nothing to wait for
        start = time.monotonic()
        rank_watch.wait_until_read(f.fileno(), timeout_s=10)
        assert time.monotonic() - start < 1
