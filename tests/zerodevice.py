"""A local stand-in for ZeroGPU's device service, for tests of the real ``spaces`` package.

On a ZeroGPU Space, ``spaces`` talks to a device service at SPACES_ZERO_DEVICE_API_URL
(``spaces/zero/api.py``, ``APIClient``): ``POST /startup-report`` when the app launches,
``POST /schedule`` (query: cgroupPath, taskId, enableQueue, tokenVersion, durationSeconds,
the visitor's token) before each decorated call, answered with a GPU to use
(``ScheduleResponse``: idle, nvidiaIndex, nvidiaUUID, allowToken) or 429 with the quota
left (``QuotaInfos``); ``POST /allow`` (allowToken, pid) from the forked worker and
``POST /release`` (allowToken, fail) when the call ends; ``GET /queue-size``.

This server answers those requests on 127.0.0.1 and records every one, so a test sees what
the package sent: the duration asked for, the token, which worker was allowed.
"""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


def visitor_token(user: str) -> str:
    """A JWT-shaped X-IP-Token, as the Hub's proxy adds to a visitor's requests (``spaces``
    decodes its payload only)."""

    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part({'user': user})}.signature"


@dataclass
class Call:
    path: str
    params: dict[str, str]


@dataclass
class ZeroDevice:
    """The running stand-in. ``refuse_left``: answer every schedule with "quota exceeded",
    this many seconds left (None: lend a GPU)."""

    refuse_left: int | None = None
    calls: list[Call] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/"

    def of(self, path: str) -> list[Call]:
        return [c for c in list(self.calls) if c.path == path]

    def start(self) -> ZeroDevice:
        device = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def _answer(self, status: int, body: object | None = None, headers=()) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                url = urlsplit(self.path)
                params = {k: v[-1] for k, v in parse_qs(url.query).items()}
                device.calls.append(Call(url.path, params))
                if url.path == "/schedule":
                    auth = [("X-Authenticated", "regular")] if "token" in params else []
                    if device.refuse_left is not None:
                        quota = {"left": device.refuse_left, "wait": 3600}
                        return self._answer(429, quota, auth)
                    n = len(device.of("/schedule"))
                    grant = {
                        "idle": False,
                        "nvidiaIndex": 0,
                        "nvidiaUUID": "GPU-00000000-0000-0000-0000-000000000000",
                        "allowToken": f"allow-{n}",
                    }
                    return self._answer(200, grant, auth)
                if url.path in ("/startup-report", "/allow", "/release"):
                    return self._answer(200)
                if url.path == "/queue-size":
                    return self._answer(200, 0)
                return self._answer(404)

            do_GET = do_POST = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
