"""The watcher: one small process per machine that reports a rank which dies without a word.

A rank that raises reports itself (:func:`common.distributed.run_main`). A rank that is
*killed* (``kill -9``, the out-of-memory killer) or leaves through ``os._exit`` cannot, and
neither can the others: ``mpiexec`` (MPICH's Hydra) sends SIGKILL to every other rank a few
milliseconds after it sees one die, before any Python code of theirs runs again. So the report
comes from a process outside the ranks' process groups, which ``mpiexec`` does not kill:

* the first rank on each machine starts ``python common/rank_watch.py FOLDER`` in a session of
  its own; it listens on a Unix socket in FOLDER (a fresh temporary folder);
* every rank on that machine connects and says who it is (``hello RANK PID``); rank 0 later
  says where checkpoints go (``checkpoints FOLDER``), and every rank says ``done`` before it
  ends normally or ``reported`` before it aborts the job after its own one-line error;
* the kernel closes a process's socket the moment it ends, so the watcher learns of a death
  without polling. The first connection to close without ``done`` is the rank that died (when
  the watcher wakes late and finds several closed, epoll lists them in the order they closed);
  the watcher reads its exit status while it is a zombie (Linux ``/proc``), checks that the
  newest checkpoint loads, prints ONE line and exits::

      error: rank 1 of 2 died (killed by signal 9, SIGKILL); newest checkpoint: runs/x/last.h5
      (intact, epoch 3); resume with: mpiexec -n 2 python convolutional/main.py ... --resume runs/x/last.h5

The watcher writes to the same stderr as rank 0, so ``mpiexec`` passes the line on. For a rank
that ends by a signal (its own SIGKILL included) ``mpiexec`` prints its own banner on stdout;
no documented option switches it off.
"""
from __future__ import annotations

import os
import selectors
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SOCKET_NAME = "ranks.sock"
#: The cause when the exit status is gone: ``mpiexec`` collects a dead rank within
#: milliseconds, and on a busy machine the watcher can come too late to read it.
UNKNOWN_CAUSE = "its process ended without a word: kill -9, the out-of-memory killer, or os._exit"
#: How long the watcher waits for every local rank to connect before it gives up watching.
CONNECT_TIMEOUT_S = 30.0


# ----------------------------------------------------------------------------- the ranks' side
class RankLink:
    """One rank's connection to its machine's watcher (a no-op if it could not be made)."""

    def __init__(self, sock: socket.socket | None):
        self.sock = sock

    def send(self, line: str) -> None:
        if self.sock is None:
            return
        try:
            self.sock.sendall((line + "\n").encode())
        except OSError:
            self.sock = None

    def checkpoints(self, folder) -> None:
        """Rank 0: checkpoints are written to ``folder`` (the watcher reports the newest)."""
        self.send(f"checkpoints {Path(folder).resolve()}")

    def done(self) -> None:
        """This rank ends normally (or exits with a usage error every rank saw)."""
        self.send("done")
        self.close()

    def reported(self) -> None:
        """This rank printed its own error line and aborts the job: the watcher stays silent."""
        self.send("reported")
        self.close()

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def connect(comm, argv) -> RankLink:
    """Start this machine's watcher (on its first rank) and connect every rank to it.

    Collective over ``comm`` (a :class:`common.distributed.Communicator`). ``argv`` is the
    program's arguments, for the resume command. Any failure leaves the ranks unwatched.
    """
    if not hasattr(socket, "AF_UNIX"):  # the same answer on every rank: nobody watches
        return RankLink(None)
    node = comm.comm.Split_type(comm.MPI.COMM_TYPE_SHARED, key=comm.rank)
    folder = None
    if node.Get_rank() == 0:
        try:
            folder = tempfile.mkdtemp(prefix="nnott-ranks-")
            command = shlex.join(["mpiexec", "-n", str(comm.size), "python", sys.argv[0]] + list(argv))
            watcher = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), folder, str(comm.size),
                                        str(node.Get_size()), str(int(node.Get_size() == comm.size)), command],
                                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True,
                                       env={k: v for k, v in os.environ.items() if not k.startswith("PMI_")})
            deadline = time.monotonic() + 10.0  # until it listens (or could not)
            while not os.path.exists(os.path.join(folder, SOCKET_NAME)):
                if watcher.poll() is not None or time.monotonic() > deadline:
                    folder = None
                    break
                time.sleep(0.01)
        except OSError:
            folder = None
    folder = node.bcast(folder, root=0)
    node.Free()
    return link_to(folder, comm.rank) if folder is not None else RankLink(None)


def link_to(folder: str, rank: int, timeout_s: float = 10.0) -> RankLink:
    """Connect to the watcher serving ``folder`` and say ``hello RANK PID``."""
    path = os.path.join(folder, SOCKET_NAME)
    deadline = time.monotonic() + timeout_s
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            break
        except OSError:
            sock.close()
            if time.monotonic() > deadline:
                return RankLink(None)
            time.sleep(0.02)
    link = RankLink(sock)
    link.send(f"hello {rank} {os.getpid()}")
    return link


def wait_until_read(fd: int = 2, timeout_s: float = 2.0) -> None:
    """Wait until whoever reads ``fd`` (a pipe: ``mpiexec``'s, for a rank's stderr) has taken
    everything written to it. A process that is about to end the job calls this after its
    one line: ``mpiexec`` stops reading its ranks' pipes once the job is aborted, and a line
    still in the pipe would be lost. Not a pipe (a terminal, a file): returns at once."""
    try:
        import array
        import fcntl
        import stat
        import termios

        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return
        waiting = array.array("i", [0])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            fcntl.ioctl(fd, termios.FIONREAD, waiting)  # bytes still in the pipe
            if waiting[0] == 0:
                return
            time.sleep(0.005)
    except (ImportError, OSError):
        return


# ----------------------------------------------------------------------------- the watcher's side
def exit_status(pid: int, wait_s: float = 0.05):
    """(signal, code) of a process that has just ended, read from ``/proc`` while it is a
    zombie: (9, None) for SIGKILL, (None, 3) for exit code 3; (None, None) if it is gone."""
    stat = Path(f"/proc/{pid}/stat")
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None, None
        if fields[0] == "Z" and len(fields) >= 50:  # field 52 of proc(5): the wait status
            status = int(fields[-1])
            return (status & 0x7F, None) if status & 0x7F else (None, status >> 8)
        time.sleep(0.002)
    return None, None


def describe_cause(sig, code) -> str:
    if sig is not None:
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = "unknown signal"
        return f"killed by signal {sig}, {name}"
    if code is not None:
        return f"exited with code {code} in the middle of the run"
    return UNKNOWN_CAUSE


def newest_checkpoint(folder):
    """('newest checkpoint: PATH (intact, epoch E)', or what is wrong with it, or that there is
    none; the path if it loads, else None). ``last.h5`` if present, else the newest ``*.h5``."""
    folder = Path(folder) if folder else None
    files = sorted(folder.glob("*.h5"), key=lambda p: (p.name == "last.h5", p.stat().st_mtime)) if folder else []
    if not files:
        return "no checkpoint was written before it died", None
    path = files[-1]
    if path.is_relative_to(Path.cwd()):
        path = path.relative_to(Path.cwd())  # as the user typed it: runs/<run>/last.h5
    try:
        from common.checkpoint import load_checkpoint

        epoch = load_checkpoint(path).epoch
    except Exception as exc:  # noqa: BLE001 - whatever is wrong, say so in the one line
        return f"newest checkpoint: {path} (does not load: {' '.join(str(exc).split())})", None
    return f"newest checkpoint: {path} (intact, epoch {epoch})", path


def report(rank, size, pid, command, folder) -> str:
    """The one line for rank ``rank`` (process ``pid``), which has just ended without ``done``."""
    sig, code = exit_status(pid) if pid is not None else (None, None)
    where, path = newest_checkpoint(folder)
    who = "a rank" if rank is None else f"rank {rank}"  # one that died before it said who it was
    line = f"error: {who} of {size} died ({describe_cause(sig, code)}); {where}"
    if path is not None:
        line += f"; resume with: {command} --resume {path}"
    return line


def watch(folder: str, size: int, local_size: int, whole_job: bool, command: str) -> int:
    """Serve the local ranks until each has said ``done`` or one has died (then report it)."""
    selector = selectors.DefaultSelector()
    state = {}  # connection -> {"rank", "pid", "buffer", "done"}
    checkpoints = None
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(os.path.join(folder, SOCKET_NAME))
        server.listen(local_size)
        server.settimeout(CONNECT_TIMEOUT_S)
        for _ in range(local_size):
            conn, _ = server.accept()
            selector.register(conn, selectors.EVENT_READ)
            state[conn] = {"rank": None, "pid": None, "buffer": b"", "done": False}
    except OSError:
        return 0  # a rank never came (or no socket here): nothing to watch
    finally:
        server.close()
        shutil.rmtree(folder, ignore_errors=True)  # connected sockets live on without their file
    while state:
        dead = []
        for key, _ in selector.select():
            conn = key.fileobj
            info = state[conn]
            try:
                data = conn.recv(4096)
            except OSError:
                data = b""
            info["buffer"] += data
            *lines, info["buffer"] = info["buffer"].split(b"\n")
            for line in lines:
                word, _, rest = line.decode().partition(" ")
                if word == "hello":
                    info["rank"], info["pid"] = map(int, rest.split())
                elif word == "checkpoints":
                    checkpoints = rest
                elif word == "done":
                    info["done"] = True
                elif word == "reported":
                    return 0  # that rank printed the line itself
            if not data:
                selector.unregister(conn)
                conn.close()
                del state[conn]
                if not info["done"]:
                    dead.append(info)
        if dead:  # the first end without "done"; mpiexec stops the others a moment later
            # When the watcher wakes late, several ends come at once; epoll lists them in the
            # order the connections closed, so the first is still the rank that died first
            # (ranks send nothing while they train, so no unread message keeps an older place).
            info = dead[0]
            if state or whole_job or len(dead) > 1:
                line = report(info["rank"], size, info["pid"], command, checkpoints)
                print("\n" + line, file=sys.stderr, flush=True)  # "\n": rank 0's progress bar may be mid-line
                wait_until_read(sys.stderr.fileno())
            return 1
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the ranks' business
    folder_arg, size_arg, local_arg, whole_arg, command_arg = sys.argv[1:6]
    try:
        sys.exit(watch(folder_arg, int(size_arg), int(local_arg), whole_arg == "1", command_arg))
    except Exception:  # noqa: BLE001 - a watcher that cannot watch must not add lines to the job's output
        sys.exit(0)
