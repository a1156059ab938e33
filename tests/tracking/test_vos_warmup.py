"""SAM2WEB_COMPILE=vos compiles in a background warm-up at model load: the first click does
not wait for it and gives the uncompiled model's masks; after the warm-up the compiled
parts are used. torch.compile is replaced by a double that holds the first compile until
the test lets it go; the refusal without a C compiler still comes first."""

from __future__ import annotations

import contextlib
import threading
import warnings

import numpy as np
import pytest
import torch

from sam2web.errors import CheckpointError
from sam2web.tracking import model, vos
from sam2web.tracking.checkpoints import get_spec
from sam2web.tracking.tracker import TrackingSession
from sam2web.types import Click
from tests.conftest import TEST_RESOLUTION

WAIT_S = 600  # a bound on waits for events, only reached when something is broken


class CompileDouble:
    """Stands in for ``torch.compile``: each compiled function runs the eager one and
    records the calling thread and its inputs' shapes; every call waits for ``release``
    (the compile "takes minutes") unless it comes after it."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.compiling = threading.Event()  # a compiled function was entered
        self.options: list[dict] = []
        self.calls: list[tuple[str, str, tuple]] = []  # (thread name, function, shapes)
        self.held_outside_warm_up = False

    def __call__(self, fn, **options):
        self.options.append(options)
        double = self

        def compiled(*args, **kwargs):
            thread = threading.current_thread().name
            shapes = tuple(
                tuple(a.shape) for a in [*args, *kwargs.values()] if isinstance(a, torch.Tensor)
            )
            points = kwargs.get("points")
            if points is not None:
                shapes += (tuple(points[0].shape),)
            double.calls.append((thread, fn.__qualname__, shapes))
            double.compiling.set()
            if not double.release.is_set():
                if thread != "sam2web-compile":
                    double.held_outside_warm_up = True
                double.release.wait(WAIT_S)
            return fn(*args, **kwargs)

        return compiled


@pytest.fixture
def compile_double(monkeypatch):
    double = CompileDouble()
    stances: list[str] = []
    monkeypatch.setattr(torch, "compile", double)
    monkeypatch.setattr(vos, "set_stance", stances.append)
    monkeypatch.setattr(model, "vos_applies", lambda device: True)  # CUDA's path on a CPU
    double.stances = stances
    yield double
    double.release.set()


def test_the_first_click_does_not_wait_for_the_compile(
    compile_double, random_checkpoint, make_session, clip_mp4, tmp_path
):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predictor = model.build_predictor(
            get_spec("sam2.1-tiny"),
            random_checkpoint,
            device="cpu",
            image_size=TEST_RESOLUTION,
            compile="vos",
        )
    assert type(predictor).__name__ == "SAM2VideoPredictorVOS"
    gate = predictor.sam2web_vos
    assert set(gate.parts) == set(vos.PARTS)
    assert compile_double.compiling.wait(WAIT_S)  # the warm-up is inside a compile now
    assert gate.status() == vos.COMPILING and not gate.done.is_set()

    plain = make_session(clip_mp4)  # sam2's plain predictor on the same weights
    fast = TrackingSession(predictor, plain.frames._paths, plain.info, tmp_path / "fast")
    for session in (plain, fast):
        session.add_object("disc")
    first = Click(40, 60, True)
    got = fast.add_click(0, 1, first)
    assert not compile_double.held_outside_warm_up and not gate.done.is_set()
    assert all(thread == "sam2web-compile" for thread, _, _ in compile_double.calls)
    # The uncompiled forwards give what sam2's plain predictor gives.
    assert np.array_equal(got.masks[1], plain.add_click(0, 1, first).masks[1])

    compile_double.release.set()
    assert gate.done.wait(WAIT_S)
    assert gate.compiled and gate.error is None and gate.status() is None
    assert compile_double.stances == ["default", "eager_on_recompile"]
    # The warm-up compiled 1, 2 and 3 clicks.
    warmed = {
        shapes[-1][1]
        for thread, name, shapes in compile_double.calls
        if thread == "sam2web-compile" and name.startswith("PromptEncoder.")
    }
    assert {1, 2, 3} <= warmed

    before = len(compile_double.calls)
    second = Click(60, 60, True)
    got = fast.add_click(0, 1, second)
    mine = [c for c in compile_double.calls[before:] if c[0] == threading.current_thread().name]
    assert {name.split(".")[0] for _, name, _ in mine} >= {"PromptEncoder", "MaskDecoder"}
    assert np.array_equal(got.masks[1], plain.add_click(0, 1, second).masks[1])


def test_vos_is_refused_without_a_c_compiler_before_anything_is_built(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.delenv("CXX", raising=False)
    import sam2.build_sam

    built, started = [], []
    monkeypatch.setattr(
        sam2.build_sam, "build_sam2_video_predictor", lambda *a, **k: built.append(1)
    )
    monkeypatch.setattr(vos.CompileGate, "start", lambda self, autocast: started.append(1))
    with pytest.raises(CheckpointError, match="SAM2WEB_COMPILE=vos needs a C compiler"):
        model.build_predictor(get_spec("sam2.1-tiny"), None, device="cuda", compile="vos")
    assert built == [] and started == []


class Part(torch.nn.Module):
    """A part whose eager forward answers "eager"; sam2's compile is stood in for by an
    instance ``forward`` answering "compiled"."""

    def forward(self, x):
        return "eager"


class FakeVos:
    def __init__(self):
        for name in vos.PARTS:
            part = Part()
            part.forward = lambda x: "compiled"
            setattr(self, name, part)


def test_a_failed_warm_up_leaves_the_eager_forwards_in_use(monkeypatch):
    stances: list[str] = []
    monkeypatch.setattr(vos, "set_stance", stances.append)
    entered, release = threading.Event(), threading.Event()
    seen_in_warm_up = []

    def failing(predictor, autocast):
        seen_in_warm_up.append(predictor.sam_mask_decoder(0))
        entered.set()
        release.wait(WAIT_S)
        raise RuntimeError("inductor could not build a kernel")

    monkeypatch.setattr(vos, "warm_up", failing)
    predictor = FakeVos()
    gate = vos.CompileGate(predictor)
    assert gate.parts == list(vos.PARTS)
    gate.start(contextlib.nullcontext)
    assert entered.wait(WAIT_S)
    assert predictor.image_encoder(0) == "eager" and gate.status() == vos.COMPILING
    release.set()
    assert gate.done.wait(WAIT_S)
    assert seen_in_warm_up == ["compiled"]  # the warm-up thread runs the compiled forward
    assert not gate.compiled and "inductor could not build a kernel" in gate.error
    assert gate.status() is None
    assert [predictor.memory_attention(0), predictor.sam_prompt_encoder(0)] == ["eager"] * 2
    assert stances == ["default", "eager_on_recompile"]


def test_a_warmed_gate_uses_the_compiled_forwards_and_a_second_warm_up_pauses_them(
    monkeypatch,
):
    monkeypatch.setattr(vos, "set_stance", lambda stance: None)
    entered, release = threading.Event(), threading.Event()

    def second(predictor, autocast):
        entered.set()
        release.wait(WAIT_S)

    first = FakeVos()
    monkeypatch.setattr(vos, "warm_up", lambda predictor, autocast: None)
    gate = vos.CompileGate(first)
    gate.start(contextlib.nullcontext).join(WAIT_S)
    assert gate.compiled and first.sam_mask_decoder(0) == "compiled"
    # Another model compiling switches torch's stance back to compiling: the first
    # model's calls run eagerly until it is done.
    monkeypatch.setattr(vos, "warm_up", second)
    other = vos.CompileGate(FakeVos())
    thread = other.start(contextlib.nullcontext)
    assert entered.wait(WAIT_S)
    assert first.sam_mask_decoder(0) == "eager"
    release.set()
    thread.join(WAIT_S)
    assert first.sam_mask_decoder(0) == "compiled"
