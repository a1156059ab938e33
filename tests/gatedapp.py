"""``python tests/gatedapp.py GATE_DIR``: the app exactly as ``python app.py`` serves it, with
tracking runs that a test can hold part-way, in the server's own process (tests only).

A test holds the next tracking run of a session by writing ``GATE_DIR/<id>.hold`` (``<id>``:
the session folder's server-made name, 32 hex digits) holding a frame count K before the run
starts. That run then, in the server:

- after its K-th tracked frame, writes ``<id>.held`` and tracks nothing more until
  ``<id>.go`` exists or the session is closed (whichever comes first; at most
  :data:`HOLD_LIMIT_S`, so a failed test cannot keep a server busy for ever);
- when its frames end (all tracked, cancelled or closed), writes ``<id>.ended``: how many
  frames it yielded and whether the session was closed by then;
- when the run's thread is done with everything (exports, the session's files, the
  clean-up after it), writes ``<id>.finished`` with the phase it ended in.

Markers are JSON, written whole (a rename). Runs of sessions without a hold file are not
touched. :class:`tests.appserver.RunGate` is the test's side.
"""

from __future__ import annotations

import json
import logging
import os
import runpy
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOLD_LIMIT_S = 300.0
POLL_S = 0.02

log = logging.getLogger("gatedapp")


def write_marker(path: Path, record: dict) -> None:
    part = path.with_name(path.name + ".part")
    part.write_text(json.dumps(record), encoding="utf-8")
    os.replace(part, path)


def _hold(go: Path, user) -> None:
    deadline = time.monotonic() + HOLD_LIMIT_S
    while not go.exists() and not user.closed:
        if time.monotonic() > deadline:
            log.warning("a held run was let go after %.0f s without a release", HOLD_LIMIT_S)
            return
        time.sleep(POLL_S)


def install(gate_dir: Path) -> None:
    """Wrap the session's tracking run and the end of its background thread."""
    from sam2web.session.user import UserSession
    from sam2web.ui.guard import SessionRegistry

    propagate = UserSession.propagate
    run_ended = SessionRegistry.run_ended
    held: dict[int, str] = {}  # id(user) -> the folder name of its held run

    def gated(self, *args, **kwargs):
        name = self.workspace.id if self.workspace is not None else None
        spec = gate_dir / f"{name}.hold"
        if name is None or not spec.is_file():
            yield from propagate(self, *args, **kwargs)
            return
        after = int(spec.read_text(encoding="utf-8"))
        spec.unlink()  # holds this run only
        held[id(self)] = name
        frames = 0
        try:
            for step in propagate(self, *args, **kwargs):
                frames += 1
                yield step
                if frames == after:
                    write_marker(gate_dir / f"{name}.held", {"frames": frames})
                    _hold(gate_dir / f"{name}.go", self)
        finally:
            write_marker(gate_dir / f"{name}.ended", {"frames": frames, "closed": self.closed})

    def ended(registry, run) -> None:
        try:
            run_ended(registry, run)
        finally:
            name = held.pop(id(run.user), None)
            if name is not None:
                write_marker(gate_dir / f"{name}.finished", {"phase": run.progress.phase})

    UserSession.propagate = gated
    SessionRegistry.run_ended = ended


if __name__ == "__main__":
    gate = Path(sys.argv[1])
    gate.mkdir(parents=True, exist_ok=True)
    sys.path[0] = str(ROOT)  # as app.py would have it (tests/ holds modules named like packages)
    install(gate)
    runpy.run_path(str(ROOT / "app.py"), run_name="__main__")
