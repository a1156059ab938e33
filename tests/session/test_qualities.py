"""The qualities a server offers: full resolution in bfloat16 only where the processor
runs it natively and fast (the probe's answer, faked here both ways), and what choosing it
does to a session, its project and the page."""

from __future__ import annotations

import dataclasses
import json

import gradio as gr
import pytest

from sam2web.errors import PromptError
from sam2web.session.engine import Engine
from sam2web.session.user import UserSession
from sam2web.settings import Settings
from sam2web.ui.layout import build_layout
from tests import synth
from tests.masks import assert_nontrivial, stored_masks


def _engine(tmp_path, checkpoint, probe: str) -> Engine:
    settings = dataclasses.replace(
        Settings.from_env({}),
        resolution=256,
        fast_resolution=128,
        checkpoint=checkpoint,
        offline=True,
        data_dir=tmp_path / "sessions",
        bf16_probe=probe,
    )
    return Engine(settings)


def test_without_native_bf16_the_faster_full_quality_is_not_offered(tmp_path, random_checkpoint):
    engine = _engine(tmp_path, random_checkpoint, "no")
    assert [q.key for q in engine.qualities()] == ["full", "fast"]
    with gr.Blocks():
        page = build_layout(engine)
    assert [value for _, value in page.quality.choices] == ["full", "fast"]
    assert [value for _, value in page.compare_candidate.choices] == ["fast"]
    user = UserSession(engine)
    assert user.quality == "full"
    with pytest.raises(PromptError, match="offers these qualities: Full resolution"):
        user.set_quality("full-bf16")
    assert user.quality == "full"


def test_with_native_bf16_it_is_offered_and_runs_in_bf16(tmp_path, random_checkpoint):
    """The precision is read from the model itself: a forward hook on a memory-attention
    layer records the dtype of every output while the session tracks.

    Recorded run of a wrong variant: with ``set_quality("full")`` in place of
    ``"full-bf16"`` the hook saw only float32 and the dtype assertion failed.
    """
    import torch

    engine = _engine(tmp_path, random_checkpoint, "yes")
    keys = [q.key for q in engine.qualities()]
    assert keys == ["full", "full-bf16", "fast"]
    with gr.Blocks():
        page = build_layout(engine)
    labels = dict((value, label) for label, value in page.quality.choices)
    assert labels["full-bf16"] == "Full resolution, faster (256 px, bfloat16)"
    clip = synth.write_video(tmp_path / "c.mp4", synth.make_frames(4, 120, 160))
    user = UserSession(engine)
    try:
        user.upload(clip)
        user.click(0, 40, 60)
        assert user.set_quality("full-bf16") is True  # same size, other precision: replayed
        assert user.resolution == 256 and len(user.tracking.prompts[(0, 1)].clicks) == 1
        dtypes: set = set()
        layer = user.tracking.predictor.memory_attention.layers[0].linear1
        hook = layer.register_forward_hook(lambda m, i, out: dtypes.add(out.dtype))
        try:
            list(user.propagate())
        finally:
            hook.remove()
        assert dtypes == {torch.bfloat16}
        assert_nontrivial(stored_masks(user.tracking.store))
        saved = json.loads(user.save_project().read_text(encoding="utf-8"))
        assert saved["model"]["bf16"] is True and saved["model"]["resolution"] == 256
        report = user.compare_qualities(frames=2, candidate="full-bf16")
        assert "full resolution in bfloat16 (256 px)" in report.sentence()
        assert "full quality (256 px)" in report.sentence()
        assert all(0.0 <= low <= mean <= 1.0 for mean, low in report.iou.values())
        # A project made in bfloat16 is replayed in bfloat16 where it is offered.
        other = UserSession(engine)
        try:
            other.upload(clip)
            assert other.quality == "full"
            other.load_project(user.workspace.exports_dir / "sam2web_project.json")
            assert other.quality == "full-bf16"
        finally:
            other.close()
    finally:
        user.close()
