"""Start the real app (``python app.py``) in a subprocess for end-to-end tests, optionally
with tracking runs a test can hold part-way (:class:`RunGate`, served by tests/gatedapp.py)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class AppServer:
    url: str
    data_dir: Path
    log_path: Path
    process: subprocess.Popen
    gate: RunGate | None = None  # where tests/gatedapp.py serves it

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_app(
    workdir: Path,
    checkpoint: Path | None,
    resolution: int = 256,
    extra_env: dict[str, str] | None = None,
    timeout: float = 120,
    python: Path | str | None = None,
    gate: RunGate | None = None,
) -> AppServer:
    """``python app.py`` (``python``: this test's interpreter unless given) on a free port
    of 127.0.0.1, its output in ``workdir/server.log``; waits until it answers. With a
    ``gate`` it runs tests/gatedapp.py instead, whose runs that gate can hold."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    data_dir = workdir / "sessions"
    env = dict(os.environ)
    env.pop("SAM2WEB_CHECKPOINT", None)
    if checkpoint is not None:
        env["SAM2WEB_CHECKPOINT"] = str(checkpoint)
    env.update(
        {
            "SAM2WEB_CACHE_DIR": str(workdir / "checkpoint-cache"),
            "SAM2WEB_OFFLINE": "1",
            "SAM2WEB_RESOLUTION": str(resolution),
            "SAM2WEB_DATA_DIR": str(data_dir),
            "SAM2WEB_HOST": "127.0.0.1",
            "SAM2WEB_PORT": str(port),
            "GRADIO_ANALYTICS_ENABLED": "False",
            "GRADIO_TEMP_DIR": str(workdir / "gradio-cache"),
            "TQDM_DISABLE": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra_env or {})
    log_path = workdir / "server.log"
    entry = [str(ROOT / "app.py")]
    if gate is not None:
        entry = [str(ROOT / "tests" / "gatedapp.py"), str(gate.folder)]
    with open(log_path, "wb") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [str(python or sys.executable), *entry],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the app exited at start:\n" + log_path.read_text())
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return AppServer(url, data_dir, log_path, process, gate)
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError("the app did not answer in time:\n" + log_path.read_text())


class RunGate:
    """The test's side of tests/gatedapp.py: hold a session's next tracking run after a
    number of frames, learn that it is held, let it go, and read how it ended. Sessions are
    named by their folder (``session_folders``), as the server made it."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def _marker(self, session: Path, kind: str) -> Path:
        return self.folder / f"{Path(session).name}.{kind}"

    def hold(self, session: Path, after: int) -> None:
        """Hold the session's next run once it tracked ``after`` frames (set before it starts)."""
        part = self._marker(session, "hold.part")
        part.write_text(str(int(after)), encoding="utf-8")
        os.replace(part, self._marker(session, "hold"))

    def release(self, session: Path) -> None:
        self._marker(session, "go").touch()

    def _wait(self, session: Path, kind: str, timeout: float) -> dict | None:
        path = self._marker(session, kind)
        if not wait_until(path.exists, timeout, 0.02):
            return None
        return json.loads(path.read_text(encoding="utf-8"))

    def held(self, session: Path, timeout: float = 120) -> dict | None:
        """``{"frames": K}`` once the run is held (None: not within ``timeout`` s)."""
        return self._wait(session, "held", timeout)

    def ended(self, session: Path, timeout: float = 120) -> dict | None:
        """``{"frames": n, "closed": bool}`` once the run's frames ended."""
        return self._wait(session, "ended", timeout)

    def finished(self, session: Path, timeout: float = 120) -> dict | None:
        """``{"phase": ...}`` once the run's thread is done, its clean-up included."""
        return self._wait(session, "finished", timeout)

    def has(self, session: Path, kind: str) -> bool:
        return self._marker(session, kind).exists()


def session_folders(data_dir: Path) -> set[Path]:
    """The server-made session folders (32 hex digits) under the sessions folder."""
    if not data_dir.is_dir():
        return set()
    return {
        p
        for p in data_dir.iterdir()
        if p.is_dir() and len(p.name) == 32 and set(p.name) <= set("0123456789abcdef")
    }


def wait_until(condition, timeout: float, step: float = 0.25) -> bool:
    """Poll ``condition()`` until it is true or ``timeout`` seconds passed; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return bool(condition())


class RssMonitor:
    """Samples a process's resident memory in a thread; ``peak`` is the largest sample."""

    def __init__(self, pid: int, every_s: float = 0.05):
        import psutil

        self.process = psutil.Process(pid)
        self.every_s = every_s
        self.peak = self.now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def now(self) -> int:
        return self.process.memory_info().rss

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.peak = max(self.peak, self.now())

    def __enter__(self) -> RssMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def settled_rss(pid: int, seconds: float = 3.0) -> int:
    """RSS once the server has been idle for a moment (the lowest of a few samples)."""
    import psutil

    process = psutil.Process(pid)
    samples = []
    for _ in range(int(seconds / 0.25)):
        samples.append(process.memory_info().rss)
        time.sleep(0.25)
    return min(samples)
