"""One user cannot reach another user's files, and nothing a user types becomes a path.

Two sessions on a running app. Session B asks Gradio's file route (``/gradio_api/file=``)
for session A's files by guessing and by traversal, for the sessions folder itself, the
app's working directory, the checkpoint and system files: every request is refused. API
payloads that name paths instead of uploads are refused with one sentence, and object
names with path or markup characters stay plain text in file names, tables and the page.
"""

from __future__ import annotations

import csv
import http.client
import json
import urllib.parse
import uuid
import zipfile
from pathlib import Path

import httpx
import pytest

from tests import synth
from tests.appserver import ROOT, start_app

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

TRACK_ARGS = ("forward", "", "", 0, 0.5, True, True, 0, "", "mm", "")
NOT_UPLOADED = "it was not uploaded through this page, or it was removed"


@pytest.fixture(scope="module")
def app(tmp_path_factory, random_checkpoint):
    server = start_app(tmp_path_factory.mktemp("security"), random_checkpoint, resolution=128)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def session_a(app, tmp_path_factory):
    """User A: a tracked clip, exports and a saved project. Returns (folder, results,
    client); the client is kept so that its session stays open."""
    clip = synth.write_video(
        tmp_path_factory.mktemp("a") / "private.mp4", synth.make_frames(4, 120, 160), fps=4
    )
    client = Client(app.url, verbose=False)
    before = set(app.data_dir.iterdir()) if app.data_dir.exists() else set()
    client.predict(handle_file(str(clip)), api_name="/upload")
    (folder,) = set(app.data_dir.iterdir()) - before
    client.predict("mouse", 0, api_name="/add_object")
    client.predict(0, 1, 40, 60, True, api_name="/add_point")
    result = client.predict(*TRACK_ARGS, api_name="/propagate")
    client.predict("", "mm", "", api_name="/save_project")
    assert (folder / "frames" / "00000.jpg").is_file()
    assert (folder / "exports" / "sam2web_tracks.csv").is_file()
    assert (folder / "exports" / "sam2web_project.json").is_file()
    return folder, result, client


@pytest.fixture(scope="module")
def session_b(app, tmp_path_factory):
    clip = synth.write_video(
        tmp_path_factory.mktemp("b") / "mine.mp4", synth.make_frames(3, 96, 128), fps=3
    )
    client = Client(app.url, verbose=False)
    client.predict(handle_file(str(clip)), api_name="/upload")
    return client


def get_raw(app, path: str) -> tuple[int, bytes]:
    """GET ``path`` exactly as written (no client-side removal of ``..`` segments)."""
    url = urllib.parse.urlsplit(app.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def file_route(target: str) -> str:
    return "/gradio_api/file=" + urllib.parse.quote(target, safe="/")


def test_the_file_route_serves_only_gradio_copies(app, session_a, session_b, random_checkpoint):
    folder = session_a[0]
    data_dir, workdir = app.data_dir, app.data_dir.parent
    guessed = data_dir / uuid.uuid4().hex
    targets = {
        "sessions folder": str(data_dir),
        "guessed session": str(guessed),
        "file in a guessed session": str(guessed / "frames" / "00000.jpg"),
        # Even the exact path of A's files (which no page is ever sent) is refused.
        "A's folder": str(folder),
        "A's frame": str(folder / "frames" / "00000.jpg"),
        "A's table": str(folder / "exports" / "sam2web_tracks.csv"),
        "A's project": str(folder / "exports" / "sam2web_project.json"),
        "traversal from the cache": f"{workdir}/gradio-cache/../sessions/{folder.name}/"
        "frames/00000.jpg",
        "traversal to the log": f"{data_dir}/../server.log",
        "relative traversal": "../../../../../../etc/passwd",
        "/etc/passwd": "/etc/passwd",
        "working directory": str(workdir),
        "server log": str(workdir / "server.log"),
        "checkpoint": str(random_checkpoint),
        "source code": str(ROOT / "sam2web" / "settings.py"),
    }
    for what, target in targets.items():
        for path in (
            file_route(target),
            "/gradio_api/file=" + target,
            file_route(target).replace("..", "%2e%2e"),
        ):
            status, body = get_raw(app, path)
            assert 400 <= status < 500, f"{what}: {path} answered {status}"
            assert b"root:" not in body and b"SAM2WEB" not in body
    # The route itself works: a file in Gradio's upload cache is served.
    (cached,) = httpx.post(
        f"{app.url}gradio_api/upload", files=[("files", ("probe.txt", b"hello"))], timeout=30
    ).json()
    status, body = get_raw(app, file_route(cached))
    assert (status, body) == (200, b"hello")


def call_api(app, api: str, data: list) -> tuple[str, str]:
    """A raw API call (what any HTTP client can send): returns (event, data) of its end."""
    response = httpx.post(f"{app.url}gradio_api/call/{api}", json={"data": data}, timeout=30)
    response.raise_for_status()
    event_id = response.json()["event_id"]
    stream = httpx.get(f"{app.url}gradio_api/call/{api}/{event_id}", timeout=120).text
    events = [block for block in stream.split("\n\n") if block.strip()]
    last = events[-1].splitlines()
    return last[0].removeprefix("event: "), last[1].removeprefix("data: ")


def file_data(path: str) -> dict:
    return {"path": path, "orig_name": Path(path).name or "x", "meta": {"_type": "gradio.FileData"}}


def test_payloads_naming_paths_are_refused(app, session_a, session_b):
    folder = session_a[0]
    workdir = app.data_dir.parent
    paths = [
        "/etc/passwd",
        str(folder / "frames" / "00000.jpg"),  # another session's frame
        str(folder / "exports" / "sam2web_project.json"),
        "../../../../../../etc/passwd",
        f"{workdir}/gradio-cache/../sessions/{folder.name}/frames/00000.jpg",
        f"{workdir}/gradio-cache",
        str(workdir / "server.log"),
        f"{app.url}gradio_api/file=/etc/passwd",  # a URL the server would fetch itself
        "",
    ]
    payloads = [file_data(p) for p in paths] + [
        {"path": "/etc/passwd"},  # without Gradio's marker
        "/etc/passwd",
        {"path": None, "meta": {"_type": "gradio.FileData"}},
    ]
    for payload in payloads:
        for api, data in (("upload", [payload]), ("load_project", [payload, 0])):
            event, text = call_api(app, api, data)
            assert event == "error", (api, payload, text)
            message = json.loads(text)["error"]
            assert message and NOT_UPLOADED in message, (api, payload, message)
    # Nothing was read or created: A's files are intact, no new session folder exists.
    assert (folder / "frames" / "00000.jpg").is_file()
    assert len(list(app.data_dir.iterdir())) == 2  # A and B
    assert Path(session_b.predict(1, api_name="/frame")[0]).is_file()


def test_uploads_must_come_from_the_upload_cache_not_a_session(tmp_path):
    """Where the sessions folder lies inside Gradio's upload cache, Gradio itself would
    accept a session's files as uploads; the page's guard does not."""
    from sam2web.ui import UploadGuard

    cache = tmp_path / "gradio"
    sessions = cache / "sessions"
    upload = cache / ("ab" * 32) / "clip.mp4"
    frame = sessions / uuid.uuid4().hex / "frames" / "00000.jpg"
    for path in (upload, frame):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"data")
    (cache / "loose.mp4").write_bytes(b"data")
    (tmp_path / "outside.mp4").write_bytes(b"data")
    guard = UploadGuard(cache, sessions)
    assert guard.resolve({"path": str(upload)}) == upload.resolve()
    for refused in (
        frame,
        cache / "loose.mp4",
        tmp_path / "outside.mp4",
        cache,
        upload.parent,
        f"{upload.parent}/../../outside.mp4",
        f"{upload.parent}/../sessions/{frame.parts[-3]}/frames/00000.jpg",
        "a\0b",
        None,
        42,
    ):
        assert guard.resolve({"path": str(refused) if refused is not None else None}) is None
    # Once read, the upload's copy is removed (with its folder), never a session file.
    for path in (upload, frame):
        with guard.reading(str(path)):
            pass
    assert not upload.exists() and not upload.parent.exists() and frame.exists()


NAMES = ["../../evil", "/etc/evil", "<script>alert(1)</script>", '=HYPERLINK("http://x")']


def test_object_names_stay_text(app, tmp_path):
    clip = synth.write_video(tmp_path / "c.mp4", synth.make_frames(3, 120, 160), fps=3)
    client = Client(app.url, verbose=False)
    before = set(app.data_dir.iterdir())
    client.predict(handle_file(str(clip)), api_name="/upload")
    (folder,) = set(app.data_dir.iterdir()) - before
    statuses = []
    for i, name in enumerate(NAMES, start=1):
        statuses.append(client.predict(name, 0, api_name="/add_object")[1])
        client.predict(0, i, 20 + 30 * i, 60, True, api_name="/add_point")
    client.predict(2, 0, api_name="/select_object")
    statuses.append(client.predict("<b>x</b>", 0, api_name="/rename_object")[1])
    result = client.predict(*TRACK_ARGS, api_name="/propagate")
    # The page's status text (Markdown) shows the names escaped, never as markup.
    page = " ".join(statuses)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>" not in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "<b>" not in page
    # Export files have fixed names; no name became a file or folder anywhere.
    names = {Path(f).name for f in result[5]}
    assert all(n.startswith("sam2web_") for n in names), names
    assert all(p.name.startswith("sam2web_") for p in (folder / "exports").iterdir())
    workdir = app.data_dir.parent
    assert not [p for p in workdir.rglob("*") if "evil" in p.name or "script" in p.name]
    assert not Path("/etc/evil").exists()
    with zipfile.ZipFile(next(f for f in result[5] if f.endswith("sam2web_masks.zip"))) as zf:
        members = zf.namelist()
    assert all(m in ("README.txt", "objects.csv") or m.startswith("masks/") for m in members)
    assert all(".." not in m and not m.startswith("/") for m in members)
    # The table keeps the names as data, with formulas made inert for spreadsheets.
    table = next(f for f in result[5] if f.endswith("sam2web_tracks.csv"))
    with open(table, newline="", encoding="utf-8") as f:
        in_table = {row["object_name"] for row in csv.DictReader(f)}
    assert in_table == {
        "../../evil",
        "<b>x</b>",
        "<script>alert(1)</script>",
        '\'=HYPERLINK("http://x")',
    }
