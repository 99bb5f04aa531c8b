"""The throwaway Redis server the tests and the demo start goes when the process that started
it dies, however it dies."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import redis

CHILD = """
import os, signal, sys
from offers.redis_server import RedisServer
server = RedisServer().start()
print(server.port, flush=True)
sys.stdin.readline()
os.kill(os.getpid(), signal.SIGKILL)  # no cleanup of any kind runs
"""


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's")
def test_a_server_whose_starter_is_killed_stops():
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    port = int(child.stdout.readline())
    server = redis.Redis(port=port, socket_timeout=1)
    assert server.ping()
    child.communicate("go\n", timeout=30)
    assert child.returncode == -9
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            server.ping()
        except redis.ConnectionError:
            return
        time.sleep(0.05)
    pytest.fail(f"the server on {port} outlived the process that started it")
