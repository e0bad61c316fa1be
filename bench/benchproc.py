"""Process helpers for ``bench/celery_bench.py``: worker subprocesses and /proc.

* :class:`Worker` starts ``celery -A benchapp worker`` in its own process group
  (``start_new_session``), logs to ``bench/results/logs/<label>.log``, waits for
  task records, and stops the whole group: SIGTERM, then SIGKILL after a
  timeout.  Use it as a context manager so it is stopped on any failure.
* :func:`tree_cpu_seconds` / :func:`tree_rss_bytes` sum ``/proc/<pid>/stat``
  CPU times and ``/proc/<pid>/status`` ``VmRSS`` over a process and its
  descendants.
* :func:`py_spy` records raw py-spy stacks of a process while a block runs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import benchapp

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results"
WORKER_OPTS = ["-P", "threads", "-c", "4", "--without-gossip", "--without-mingle",
               "--without-heartbeat", "-l", "warning"]
CLK_TCK = os.sysconf("SC_CLK_TCK")
REC = benchapp.RECORD
POLL = 0.02  # seconds between polls of a record file's size


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants (from /proc/*/stat ppid fields)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def tree_cpu_seconds(root: int) -> float:
    total = 0
    for pid in process_tree(root):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return total / CLK_TCK


def tree_rss_bytes(root: int) -> int:
    total = 0
    for pid in process_tree(root):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def _celery_cmd() -> list[str]:
    script = Path(sys.executable).with_name("celery")
    return [str(script)] if script.exists() else [sys.executable, "-m", "celery"]


class Worker:
    """A ``celery worker`` subprocess in its own process group."""

    def __init__(self, label: str, url: str, queue: str, workdir: Path) -> None:
        self.out, self.lat = workdir / f"{queue}.out", workdir / f"{queue}.lat"  # fresh per queue
        env = dict(os.environ, BENCH_BROKER=url, BENCH_QUEUE=queue,
                   BENCH_OUT=str(self.out), BENCH_LAT=str(self.lat),
                   PYTHONPATH=os.pathsep.join(filter(None, [str(BENCH_DIR),
                                                            os.environ.get("PYTHONPATH")])))
        (RESULTS / "logs").mkdir(parents=True, exist_ok=True)
        self.log_path = RESULTS / "logs" / f"{label}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        cmd = [*_celery_cmd(), "-A", "benchapp", "worker", *WORKER_OPTS, "-n", f"{label}@%h"]
        self.proc = subprocess.Popen(cmd, cwd=BENCH_DIR, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self.proc.pid

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"worker {self.pid} exited with {self.proc.returncode}:\n{tail}")

    def records(self, path: Path, count: int, timeout: float) -> list[tuple[float, float]]:
        """Wait until ``path`` holds ``count`` records; return all of them."""
        deadline = time.monotonic() + timeout
        while (size := path.stat().st_size if path.exists() else 0) < count * REC.size:
            self.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{size // REC.size}/{count} records in {path} after {timeout}s")
            time.sleep(POLL)
        return read_records(path)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the process group, SIGKILL it after ``timeout``."""
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, sig)
            try:
                self.proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)  # stragglers in the group
        self._log.close()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def py_spy(enabled: bool, pid: int, label: str):
    """Record raw py-spy stacks of ``pid`` while the block runs (if enabled)."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not enabled or not os.path.exists(exe):
        yield None
        return
    out = RESULTS / f"pyspy-{label}.txt"
    proc = subprocess.Popen([exe, "record", "--pid", str(pid), "--format", "raw", "--rate", "250",
                             "--nonblocking", "--threads", "-o", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield out
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def read_records(path: Path) -> list[tuple[float, float]]:
    data = path.read_bytes() if path.exists() else b""
    return list(REC.iter_unpack(data[: len(data) - len(data) % REC.size]))
