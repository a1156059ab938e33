"""Zones, ruler, pairs, occupancy and label stacks through the user session, on discs that
follow scripted paths: every figure is compared with the value the script implies.

The masks of the scripted paths are written into the session's store in place of the
random-weight model's (the model only creates the objects); everything after that runs as
in the app: one pass over the stored masks, measurements, then the behaviour outputs.
"""

from __future__ import annotations

import csv
import json
import math
import zipfile

import numpy as np
import pytest
import tifffile

from sam2web.analysis.zones import Circle, Rect
from sam2web.errors import PromptError
from sam2web.session.behaviour import BehaviourSetup, BehaviourState, Ruler
from sam2web.session.project import ProjectError
from sam2web.session.projectload import load_project, parse_project
from sam2web.session.user import UserSession
from tests import synth
from tests.masks import assert_nontrivial

H, W, T, FPS = 120, 160, 10, 10.0
# Disc 1 crosses the frame left to right, 10 px per frame; disc 2 stays put. Centres on
# pixel corners make each rasterised disc symmetric about its centre, so centroids are exact.
MOVER = synth.Disc(x0=20, y0=60, vx=10, vy=0, radius=8, color=(230, 60, 40))
STILL = synth.Disc(x0=130, y0=60, vx=0, vy=0, radius=8, color=(40, 90, 230))
# x in [50, 90]: the mover's centroid is inside on frames 3, 4, 5, 6, 7.
BOX = Rect("box", 50, 20, 90, 100)


def _score(t: int) -> float:
    return 1.0 + t  # a known SAM 2 score per frame


def _session(engine, tmp_path) -> UserSession:
    frames = synth.make_frames(T, H, W, discs=(MOVER, STILL))
    clip = synth.write_image_zip(tmp_path / "discs.zip", frames, shuffle_names=False)
    user = UserSession(engine)
    user.upload(clip, source_name="discs.zip", fps=FPS)
    user.click(0, 20, 60)  # object 1
    user.add_object("still")
    user.click(0, 130, 60)  # object 2
    store = user.tracking.store
    for t in range(T):
        masks = {1: synth.disc_mask(H, W, MOVER, t), 2: synth.disc_mask(H, W, STILL, t)}
        store.write(t, masks, {1: _score(t), 2: 2.0})
    assert_nontrivial(store.read(5).masks.values())
    return user


def _csv(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_zone_pair_and_occupancy_figures_match_the_script(engine, tmp_path):
    user = _session(engine, tmp_path)
    user.behaviour.setup = BehaviourSetup(zones=(BOX,), pair_within=50)
    out = user.export_behaviour()
    mover = next(s for s in out.zone_stats if s.object_id == 1)
    inside = [t for t in range(T) if BOX.x0 <= MOVER.center(t)[0] <= BOX.x1]
    assert inside == [3, 4, 5, 6, 7]
    assert mover.frames_inside == 5 and mover.entries == 1
    assert mover.time_in_zone_s == pytest.approx(5 / FPS)
    assert mover.latency_s == pytest.approx(3 / FPS)
    assert mover.distance_inside == pytest.approx(4 * 10.0)  # 4 steps of 10 px inside
    assert mover.mean_score_inside == pytest.approx(np.mean([_score(t) for t in inside]))
    still = next(s for s in out.zone_stats if s.object_id == 2)
    assert still.frames_inside == 0 and still.latency_s is None
    # Pairs: distance = |130 - (20 + 10 t)|; within 50 px on t = 6..10 -> frames 6..9.
    rows = _csv(out.files["pairs"])
    assert [float(r["distance"]) for r in rows] == pytest.approx(
        [abs(130 - MOVER.center(t)[0]) for t in range(T)]
    )
    (summary,) = out.pair_summaries
    assert summary.frames_within == 4 and summary.time_within_s == pytest.approx(0.4)
    nearest = _csv(out.files["nearest"])
    assert {r["neighbour_id"] for r in nearest} == {"1", "2"}
    # Occupancy: 32 x 32 cells of 5 x 3.75 px; the still disc spends every frame in one.
    occ = _csv(out.files["occupancy 2"])
    visited = [r for r in occ if int(r["frames"])]
    assert len(visited) == 1 and int(visited[0]["frames"]) == T
    assert float(visited[0]["x_min"]) <= 130 < float(visited[0]["x_max"])
    assert sum(int(r["frames"]) for r in _csv(out.files["occupancy 1"])) == T
    assert [p.name for p, _ in out.heatmaps] == [
        "heatmap_object1.png",
        "heatmap_object2.png",
    ]


def test_membership_by_overlap_and_the_ruler_scale(engine, tmp_path):
    user = _session(engine, tmp_path)
    state = user.behaviour
    state.click("ruler", 10, 10)
    state.click("ruler", 110, 10)
    cal = user.set_ruler(25, "mm")  # 100 px = 25 mm
    assert cal.pixels_per_unit == pytest.approx(4.0) and cal.unit == "mm"
    # The whole disc (radius 8) must be inside: centre in [58, 82] -> frames 4, 5, 6.
    state.setup = BehaviourSetup(zones=(BOX,), min_overlap=1.0, ruler=state.setup.ruler)
    out = user.export_behaviour()
    mover = next(s for s in out.zone_stats if s.object_id == 1)
    assert mover.frames_inside == 3 and mover.latency_s == pytest.approx(0.4)
    assert mover.distance_inside == pytest.approx(20 / 4.0) and mover.unit == "mm"
    image = user.view_frame(0)
    assert image.shape[:2] == (H * user.display_scale, W * user.display_scale)
    assert user.video_style.zones == ()  # the overlay video shows zones only when asked
    user.behaviour.on_video = True
    assert user.video_style.zones == (BOX,)


def test_zones_drawn_by_clicks():
    state = BehaviourState()
    assert "1 point" in state.click("rectangle", 10, 20, "left")
    state.click("rectangle", 60, 80, "left")
    state.click("circle", 100, 60, "food")
    state.click("circle", 110, 60, "food")
    for x, y in ((10, 10), (40, 10), (40, 40)):
        state.click("polygon", x, y, "tri")
    state.close("tri")
    for a in range(0, 360, 60):
        rad = math.radians(a)
        state.click("round arena", 80 + 30 * math.cos(rad), 60 + 30 * math.sin(rad), "")
    state.close("")
    zones = {z.name: z for z in state.setup.zones}
    assert zones["left"] == Rect("left", 10, 20, 60, 80)
    assert zones["food"] == Circle("food", 100, 60, 10)
    assert zones["tri"].contains(35, 15) and not zones["tri"].contains(15, 35)
    assert zones["centre"].contains(80, 60) and not zones["centre"].contains(80, 80)
    assert zones["periphery"].contains(80, 85) and not zones["periphery"].contains(80, 60)
    with pytest.raises(PromptError):
        state.close("nothing drawn")


def test_a_double_click_on_a_rectangle_starts_it_again():
    """Two clicks on one spot make no rectangle: the sentence says so and the next two
    clicks make one (before, the points stayed and every click answered "N points")."""
    state = BehaviourState()
    state.click("rectangle", 30, 30, "box")
    with pytest.raises(PromptError, match="no area"):
        state.click("rectangle", 30, 30, "box")
    assert state.draft.points == []
    assert "1 point" in state.click("rectangle", 10, 20, "box")
    assert state.click("rectangle", 60, 80, "box") == "Zone 'box' added."
    assert state.setup.zones == (Rect("box", 10, 20, 60, 80),)


def test_unnamed_zones_and_arenas_never_replace_each_other():
    state = BehaviourState()
    for corners in (((0, 0), (10, 10)), ((20, 20), (40, 40))):
        for x, y in corners:
            message = state.click("rectangle", x, y, "")
    assert message == "Zone 'rectangle 2' added."
    for corner in ((50, 50), (90, 50), (90, 90), (50, 90)):
        state.click("square arena", *corner, "")
    for corner in ((100, 0), (140, 0), (140, 40), (100, 40)):
        message = state.click("square arena", *corner, "")
    assert message == "Zone 'centre 2' and 'periphery 2' added."
    names = [z.name for z in state.setup.zones]
    assert names == ["rectangle", "rectangle 2", "centre", "periphery", "centre 2", "periphery 2"]
    assert state.setup.zones[1] == Rect("rectangle 2", 20, 20, 40, 40)


def test_a_typed_name_names_an_arena_and_a_repeated_name_says_it_replaced():
    state = BehaviourState()
    for a in range(0, 360, 90):
        rad = math.radians(a)
        state.click("round arena", 80 + 30 * math.cos(rad), 60 + 30 * math.sin(rad), "left")
    assert state.close("left") == "Zone 'left centre' and 'left periphery' added."
    state.click("circle", 10, 10, "food")
    assert state.click("circle", 12, 10, "food") == "Zone 'food' added."
    state.click("circle", 50, 50, "food")
    message = state.click("circle", 55, 50, "food")
    assert message == "Zone 'food' replaced (a zone of that name was there)."
    assert [z.name for z in state.setup.zones] == ["left centre", "left periphery", "food"]
    assert state.setup.zones[-1] == Circle("food", 50, 50, 5)


def test_zones_saved_in_the_project_reload_and_replay(engine, tmp_path):
    user = _session(engine, tmp_path)
    ruler = Ruler(0, 0, 30, 40, 10, "cm")
    setup = BehaviourSetup((BOX, Circle("c", 80, 60, 20)), 0.5, 12.5, ruler)
    user.behaviour.setup = setup
    path = user.save_project(user.calibration)
    data = json.loads(path.read_text())
    assert data["version"] == 2 and data["pair_distance"] == 12.5
    assert BehaviourSetup.from_project(load_project(path)) == setup
    user.behaviour = BehaviourState()
    user.load_project(path)
    assert user.behaviour.setup == setup
    # A project without zones stays version 1; a damaged zone list is refused in one sentence.
    user.behaviour = BehaviourState()
    assert json.loads(user.save_project().read_text())["version"] == 1
    data["zones"] = [{"type": "circle", "name": "c", "cx": 1, "cy": 1, "r": -1}]
    with pytest.raises(ProjectError, match="radius above 0"):
        BehaviourSetup.from_project(parse_project(data))


def test_label_stacks_through_the_session(engine, tmp_path):
    user = _session(engine, tmp_path)
    user.calibration = Ruler(0, 0, 100, 0, 25, "µm").calibration(fps=None)
    files = user.export_label_stacks()
    with tifffile.TiffFile(files["labels_tiff"]) as tf:
        labels = tf.asarray()
        meta = tf.imagej_metadata
        xres = tf.pages[0].tags["XResolution"].value
    assert labels.shape == (T, H, W) and labels.dtype == np.uint16
    assert set(np.unique(labels)) == {0, 1, 2}
    assert np.array_equal(labels[4] == 1, synth.disc_mask(H, W, MOVER, 4))
    assert meta["finterval"] == pytest.approx(1 / FPS) and meta["unit"] == "micron"
    assert xres[0] / xres[1] == pytest.approx(4.0)  # pixels per µm
    with zipfile.ZipFile(files["ctc"]) as zf:
        names = sorted(zf.namelist())
        track = zf.read("res_track.txt").decode()
    assert names == [f"mask{t:03d}.tif" for t in range(T)] + ["res_track.txt"]
    assert track.splitlines() == [f"1 0 {T - 1} 0", f"2 0 {T - 1} 0"]


def test_the_page_draws_zones_and_a_ruler_and_shows_the_zone_table(engine, tmp_path):
    gr = pytest.importorskip("gradio")
    from sam2web.ui import SessionRegistry, UploadGuard
    from sam2web.ui import handlers as h
    from sam2web.ui import zones_handlers as zh
    from sam2web.ui.layout import build_layout

    with gr.Blocks():
        page = build_layout(engine)
    guard = UploadGuard(tmp_path / "cache", engine.settings.data_dir)
    ctx = h.Context(engine=engine, page=page, registry=SessionRegistry(), guard=guard)
    user = _session(engine, tmp_path)
    z, k = page.zones, user.display_scale

    def click(x, y, target, name=""):
        evt = gr.SelectData(None, {"index": [x * k, y * k], "value": None})
        return {**h.click_frame(ctx, user, 0, "positive", evt, target, name, 0.5),
                **zh.show_zones(ctx, user)}  # fmt: skip

    click(BOX.x0, BOX.y0, "rectangle", "box")
    out = click(BOX.x1, BOX.y1, "rectangle", "box")
    assert out[z.zone_list]["choices"] == ["box"] and "box&#x27; added" in out[page.status]
    click(10, 110, "ruler")
    click(60, 110, "ruler")
    scaled = zh.set_ruler(ctx, user, "5", "mm", 0)  # 50 px = 5 mm
    assert scaled[page.pixels_per_unit] == "10" and scaled[page.unit] == "mm"
    shown = zh.analyse(ctx, user, "centroid", 0.5, "", False, "10", "mm", "")
    assert shown[z.zone_table]["visible"] and not shown[z.pair_table]["visible"]  # one object
    table = shown[z.zone_table]["value"]["data"]
    # The mover: 5 frames inside, one entry, first in at frame 3, 40 px = 4 mm inside.
    assert table[0][1:6] == ["box", 0.5, 1, 0.3, 4.0]
    assert any(f.endswith("zones.csv") for f in shown[z.files])
    with pytest.raises(gr.Error, match="JSON list"):
        zh.set_zones(ctx, user, "{not json", 0)


def test_the_cli_writes_the_zone_table_of_a_project_with_zones(
    engine, tmp_path, monkeypatch, random_checkpoint
):
    from sam2web.cli import main as cli

    user = _session(engine, tmp_path)
    user.behaviour.setup = BehaviourSetup(zones=(BOX,))
    project = tmp_path / "p.json"
    project.write_bytes(user.save_project().read_bytes())
    user.close()
    for key, value in {
        "SAM2WEB_CHECKPOINT": str(random_checkpoint),
        "SAM2WEB_RESOLUTION": str(engine.settings.resolution),
        "SAM2WEB_OFFLINE": "1",
        "SAM2WEB_DATA_DIR": str(tmp_path / "cli-data"),
    }.items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "out"
    args = ["track", str(tmp_path / "discs.zip"), "--project", str(project), "--out", str(out)]
    assert cli.main([*args, "--no-video", "--fps", "10", "--label-stacks"]) == 0
    (folder,) = [p for p in out.iterdir() if p.is_dir()]  # beside batch_summary.csv
    assert {"zones.csv", "labels.tif", "labels_ctc.zip", "heatmap_object1.png"} <= {
        p.name for p in folder.iterdir()
    }
    # The zone table agrees with the centroids of the run's own per-frame table.
    rows = _csv(folder / "sam2web_tracks.csv")
    table = _csv(folder / "zones.csv")
    assert [(r["object_id"], r["zone"]) for r in table] == [("1", "box"), ("2", "box")]
    for r in table:
        mine = [x for x in rows if x["object_id"] == r["object_id"] and x["centroid_x"]]
        inside = [
            x for x in mine
            if BOX.contains(float(x["centroid_x"]), float(x["centroid_y"]))
        ]  # fmt: skip
        assert int(r["frames_inside"]) == len(inside)
        assert int(r["frames"]) == sum(x["object_id"] == r["object_id"] for x in rows)


def test_zones_on_the_overlay_video_are_outlined_where_they_are():
    from sam2web.outputs.render import ZONE_COLOR, OverlayStyle, draw_zones

    frame = np.zeros((H, W, 3), np.uint8)
    drawn = draw_zones(frame, [BOX], names=False)
    yellow = np.all(drawn == ZONE_COLOR, axis=2)
    assert_nontrivial([yellow])
    rows, cols = np.nonzero(yellow)
    # The outline runs along the zone's pixels [50, 90) x [20, 100) and nowhere else.
    assert (cols.min(), cols.max(), rows.min(), rows.max()) == (50, 89, 20, 99)
    assert not yellow[60, 70]  # inside, away from the edge
    state = BehaviourState(BehaviourSetup(zones=(BOX,)))
    assert OverlayStyle(zones=state.setup.zones) != OverlayStyle()  # a new video is drawn


@pytest.mark.parametrize("frames", [1, 3])
def test_a_frame_lasts_one_over_the_video_fps_even_in_a_one_frame_video(tmp_path, frames):
    """Each frame lasts 1 / fps of the video (4 fps: 0.25 s), also when a single frame
    leaves no time stamp to read the rate from: both objects sit in the zone and 2 px apart
    on every frame, so each has frames x 0.25 s in the zone, the pair as long within 5 px,
    and every occupied cell of the heatmap that long."""
    from sam2web.analysis.tables import Calibration
    from sam2web.session.behaviour import write_behaviour
    from sam2web.types import VideoInfo
    from tests.tables import make_rows

    rows = make_rows({1: [(60.0, 60.0)] * frames, 2: [(62.0, 60.0)] * frames}, fps=4.0)
    info = VideoInfo(frames, W, H, 4.0, "v.mp4", "video")
    setup = BehaviourSetup(zones=(BOX,), pair_within=5.0)
    first = np.zeros((H, W, 3), np.uint8)
    out = write_behaviour(rows, {1: "a", 2: "b"}, info, Calibration(), setup, first, tmp_path)
    assert [(s.object_id, s.time_in_zone_s) for s in out.zone_stats] == [
        (1, frames * 0.25),
        (2, frames * 0.25),
    ]
    assert [s.time_within_s for s in out.pair_summaries] == [frames * 0.25]
    for obj_id in (1, 2):
        cells = _csv(out.files[f"occupancy {obj_id}"])
        seconds = {float(c["time_s"]) for c in cells if int(c["frames"])}
        assert seconds == {frames * 0.25}
