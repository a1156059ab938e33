"""SAM 2.1's compiled video predictor (SAM2WEB_COMPILE=vos), compiled off the click path.

sam2 1.1.0's ``build_sam2_video_predictor(vos_optimized=True)`` builds
``SAM2VideoPredictorVOS``, whose constructor wraps the ``forward`` of five parts in
``torch.compile(mode="max-autotune", fullgraph=True)``: the image encoder, memory encoder,
prompt encoder and mask decoder with ``dynamic=False`` (sam2 notes an accuracy regression
with dynamic shapes for the last two) and the memory attention with ``dynamic=True`` (the
number of memories varies). torch compiles lazily, at the first call of each input shape:
left alone, the first click would compile for minutes on the model thread while every
user waits, and each new number of clicks (the prompt encoder and mask decoder see one
point more per click; a box counts two) and each new number of tracked objects would
compile again.

Marking those shapes dynamic would change sam2's numbers, so the shapes stay static and
are compiled ahead instead: :class:`CompileGate` keeps the compiled and the eager forward
of every part and routes each call. :meth:`CompileGate.start` compiles in a background
thread by running the predictor on a private blank video (:func:`warm_up`: 1 to
:data:`WARM_CLICKS` clicks, tracking, and tracking of :data:`WARM_OBJECTS` objects);
meanwhile every other thread runs the eager forwards, which give the uncompiled model's
results, so clicks never wait for it. Afterwards calls use the compiled graphs under
torch's ``eager_on_recompile`` stance: a shape the warm-up did not compile runs eagerly
instead of compiling on the click path. The warm-up runs in the precision SAM2WEB_BF16's
default gives the device (bfloat16 from compute capability 8.0), the one sessions start
in; calls in another precision (the exact float32 quality) find no compiled graph and run
eagerly.

torch's stance is process-wide; :data:`STANCE` sets it back to ``default`` while a warm-up
compiles (one at a time in a process) and, until that warm-up ends, routes every model's
calls to the eager forwards.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np

log = logging.getLogger(__name__)

PARTS = (
    "image_encoder",
    "memory_encoder",
    "memory_attention",
    "sam_prompt_encoder",
    "sam_mask_decoder",
)
"""The parts ``SAM2VideoPredictorVOS`` compiles (each part's ``forward`` attribute)."""

WARM_CLICKS = 3
"""The warm-up compiles clicks 1 to this many on one object (more run eagerly)."""

WARM_OBJECTS = 2
"""The warm-up tracks 1 object, then this many (other object counts track eagerly)."""

WARM_FRAMES = 4
"""Frames of the blank video the warm-up tracks."""

COMPILING = "Compiling the model for speed… (clicks and tracking run uncompiled meanwhile)"


def set_stance(stance: str) -> None:
    """torch's process-wide compile stance (tests stand in for it)."""
    import torch

    torch.compiler.set_stance(stance)


class _Stance:
    """Who may enter compiled code, and torch's stance: ``eager_on_recompile`` while no
    warm-up runs (cached graphs run, nothing is compiled), ``default`` during one."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._users = 0  # calls inside compiled code now, outside a warm-up
        self._warming = False
        self.warm_lock = threading.Lock()  # one warm-up at a time

    @contextlib.contextmanager
    def use(self, gate: CompileGate) -> Iterator[bool]:
        """True: this call may run ``gate``'s compiled forwards (it is warmed up and no
        warm-up compiles now)."""
        with self._cond:
            ok = gate.compiled and not self._warming
            if ok:
                self._users += 1
        try:
            yield ok
        finally:
            if ok:
                with self._cond:
                    self._users -= 1
                    self._cond.notify_all()

    @contextlib.contextmanager
    def warming(self) -> Iterator[None]:
        """Hold while compiling: new calls go eager, calls in compiled code finish first."""
        with self.warm_lock:
            with self._cond:
                self._warming = True
                self._cond.wait_for(lambda: self._users == 0)
                set_stance("default")
            try:
                yield
            finally:
                with self._cond:
                    set_stance("eager_on_recompile")
                    self._warming = False


STANCE = _Stance()


class CompileGate:
    """Routes the calls of the parts sam2 compiled: the warm-up thread runs the compiled
    forwards (compiling them), other threads the eager ones until the warm-up succeeded."""

    def __init__(self, predictor) -> None:
        self.predictor = predictor
        self.done = threading.Event()  # the warm-up ended (compiled or failed)
        self.compiled = False  # the warm-up succeeded: calls use the compiled graphs
        self.error: str | None = None
        self.seconds: float | None = None
        self._local = threading.local()
        self.parts: list[str] = []
        for name in PARTS:
            module = getattr(predictor, name, None)
            compiled = None if module is None else module.__dict__.get("forward")
            if compiled is None:  # not compiled by sam2
                continue
            eager = type(module).forward.__get__(module)
            module.forward = self._router(eager, compiled)
            self.parts.append(name)

    def _router(self, eager: Callable, compiled: Callable) -> Callable:
        def forward(*args, **kwargs):
            if getattr(self._local, "warming", False):
                return compiled(*args, **kwargs)
            with STANCE.use(self) as use:
                return (compiled if use else eager)(*args, **kwargs)

        return forward

    def status(self) -> str | None:
        """A sentence for the page while compiling, else None."""
        return None if self.done.is_set() else COMPILING

    def start(self, autocast: Callable[[], contextlib.AbstractContextManager]) -> threading.Thread:
        """Compile and warm up in a daemon thread (model calls run under ``autocast()``)."""
        thread = threading.Thread(
            target=self._run, args=(autocast,), name="sam2web-compile", daemon=True
        )
        thread.start()
        return thread

    def _run(self, autocast) -> None:
        start = time.perf_counter()
        try:
            with STANCE.warming():
                self._local.warming = True
                try:
                    warm_up(self.predictor, autocast)
                finally:
                    self._local.warming = False
                self.compiled = True
        except Exception as exc:  # the eager forwards stay in use
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("Compiling the model failed; it runs uncompiled")
        finally:
            self.seconds = time.perf_counter() - start
            self.done.set()
        if self.compiled:
            log.info("Compiled %s in %.0f s", ", ".join(self.parts), self.seconds)


def warm_up(predictor, autocast: Callable[[], contextlib.AbstractContextManager]) -> None:
    """Run ``predictor`` on a blank video of :data:`WARM_FRAMES` frames as sessions do:
    1 to :data:`WARM_CLICKS` clicks (each call re-sends all clicks, as sam2web does),
    tracking, a click on a tracked frame; then tracking of :data:`WARM_OBJECTS` objects.
    Leaves no state behind."""
    import torch

    from .sam2state import new_inference_state

    size = int(predictor.image_size)
    images = torch.zeros(WARM_FRAMES, 3, size, size, device=predictor.device)

    def click(state, frame: int, obj_id: int, count: int) -> None:
        points = np.array([[size * (0.3 + 0.1 * i), size * 0.5] for i in range(count)])
        predictor.add_new_points_or_box(
            state,
            frame,
            obj_id,
            points=points.astype(np.float32),
            labels=np.ones(count, dtype=np.int32),
            clear_old_points=True,
        )

    # A box is two points (labels 2 and 3), so 1 to WARM_CLICKS clicks cover a box alone
    # and a box with WARM_CLICKS - 2 clicks.
    for objects in (1, WARM_OBJECTS):
        state = new_inference_state(predictor, images, size, size)
        with torch.inference_mode(), autocast():
            for obj_id in range(1, objects + 1):
                for count in range(1, (WARM_CLICKS if objects == 1 else 1) + 1):
                    click(state, 0, obj_id, count)
            for _ in predictor.propagate_in_video(state):
                pass
            if objects == 1:
                click(state, WARM_FRAMES - 1, 1, 1)  # a click where memory is attended to
            predictor.reset_state(state)
