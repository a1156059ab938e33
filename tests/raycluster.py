"""A local Ray cluster for tests: a head node on 127.0.0.1 started by the fixture and
stopped by it (only the processes it started: the head runs with ``--block`` in its own
process group, which is ended as a whole). Use ``ray_cluster`` from any test module::

    from tests.raycluster import ray_cluster  # noqa: F401  (the fixture)
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 90
STOP_TIMEOUT_S = 20
TERM_GRACE_S = 2  # then the group is killed


@dataclass(frozen=True)
class RayCluster:
    address: str  # host:port of the head (GCS)
    num_cpus: int
    env: dict  # environment variables a client of this cluster needs (its own token)
    scratch: Path  # the workers' temporary folder (their TMPDIR)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _reachable(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _ray_executable() -> str:
    return str(Path(sys.executable).with_name("ray"))


def cluster_env() -> dict:
    """This cluster's own authentication token, so that it never depends on (or meets) a
    token another Ray on the machine left in ~/.ray."""
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}


def start_head(
    num_cpus: int, temp_dir: Path, log_path: Path, auth: dict
) -> tuple[subprocess.Popen, int]:
    port = free_port()
    scratch = temp_dir / "tmp"  # the workers' temporary files, removed with the cluster
    scratch.mkdir()
    env = dict(
        os.environ,
        **auth,
        PYTHONPATH=str(ROOT),
        TQDM_DISABLE="1",
        RAY_USAGE_STATS_ENABLED="0",
        TMPDIR=str(scratch),
    )
    log = open(log_path, "wb")  # noqa: SIM115 - closed with the cluster
    head = subprocess.Popen(
        [
            _ray_executable(),
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--port={port}",
            f"--num-cpus={num_cpus}",
            "--num-gpus=0",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--temp-dir={temp_dir}",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: stopped as a whole
    )
    log.close()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _reachable(port):
        if head.poll() is not None or time.monotonic() > deadline:
            stop_head(head)
            raise RuntimeError(f"the Ray head did not start:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.5)
    time.sleep(2)  # the raylet registers shortly after the GCS listens
    return head, port


def stop_head(head: subprocess.Popen) -> None:
    """End the head's process group (the head and every process it started)."""
    try:
        os.killpg(head.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        head.wait(timeout=TERM_GRACE_S)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(head.pid, signal.SIGKILL)
    head.wait(timeout=STOP_TIMEOUT_S)


@pytest.fixture(scope="module")
def ray_cluster():
    """A 2-CPU Ray head on 127.0.0.1 for the tests of one module."""
    pytest.importorskip("ray")
    # A short temp dir: Ray's socket paths must stay under the 107-character limit.
    temp_dir = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
    auth = cluster_env()
    head, port = start_head(2, temp_dir, temp_dir / "head.log", auth)
    try:
        yield RayCluster(f"127.0.0.1:{port}", 2, auth, temp_dir / "tmp")
    finally:
        stop_head(head)
        shutil.rmtree(temp_dir, ignore_errors=True)
