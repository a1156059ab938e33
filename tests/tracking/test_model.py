"""Model registry, checkpoints and predictor building, on real code paths.

Checkpoints are the real SAM2 architectures with seeded random weights, saved the way Meta
saves them. Downloads go through huggingface_hub for real, against a local HTTP server that
answers like the Hugging Face Hub does for a large (LFS) file: ``HEAD /{repo}/resolve/{rev}/
{file}`` answers 302 to a storage host with ``X-Repo-Commit``, ``X-Linked-Etag`` and
``X-Linked-Size``; the file itself comes from that storage URL.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sam2web.errors import CheckpointError
from sam2web.tracking.checkpoints import (
    DEFAULT_MODEL,
    MODELS,
    checkpoint_identity,
    get_spec,
    load_state_dict,
    resolve_checkpoint,
)
from sam2web.tracking.model import (
    MISSING_EXTENSION_MESSAGE,
    ModelCache,
    autocast_context,
    build_predictor,
    choose_device,
    cpu_supports_bf16,
    silence_missing_extension_warning,
    write_random_checkpoint,
)
from tests import synth

TINY = get_spec("sam2.1-tiny")
ROOT = Path(__file__).resolve().parents[2]


def quiet_build(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_predictor(*args, **kwargs)


def meta_build(config, ckpt, overrides=()):
    from sam2.build_sam import build_sam2_video_predictor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_sam2_video_predictor(
            config, str(ckpt), device="cpu", hydra_overrides_extra=list(overrides)
        )


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory) -> Path:
    return write_random_checkpoint(
        tmp_path_factory.mktemp("ckpt") / "small.pt", "sam2.1-small", seed=1
    )


# ---------------------------------------------------------------------------- registry


def test_registry_matches_sam2_and_settings():
    import sam2
    from sam2.build_sam import HF_MODEL_ID_TO_FILENAMES

    from sam2web.settings import SETTINGS

    assert DEFAULT_MODEL in MODELS
    assert {s.hf_repo for s in MODELS.values()} == set(HF_MODEL_ID_TO_FILENAMES)
    model_help = next(s.help for s in SETTINGS if s.name == "SAM2WEB_MODEL")
    for key, spec in MODELS.items():
        assert spec.key == key
        assert HF_MODEL_ID_TO_FILENAMES[spec.hf_repo] == (spec.config, spec.filename)
        assert (Path(sam2.__path__[0]) / spec.config).is_file()
        assert spec.label == f"{spec.name} ({spec.size_mb} MB)"
        assert key.split("-")[0] in model_help
    assert get_spec(" SAM2.1-Tiny ") is TINY


def test_unknown_model_names_the_setting_and_choices():
    with pytest.raises(CheckpointError) as err:
        get_spec("sam3-huge")
    assert "SAM2WEB_MODEL" in err.value.message
    assert all(key in err.value.message for key in MODELS)


def test_registry_sizes_and_architectures():
    """Every registered size builds; its weights take about ``size_mb`` and the mismatch
    helper recognises the architecture."""
    from sam2.build_sam import build_sam2_video_predictor

    from sam2web.tracking.checkpoints import _guess_model

    for spec in MODELS.values():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = build_sam2_video_predictor(spec.config, None, device="cpu")
        state = model.state_dict()
        megabytes = sum(t.numel() * t.element_size() for t in state.values()) / 1e6
        assert abs(megabytes - spec.size_mb) / spec.size_mb < 0.02, spec.key
        assert _guess_model(state) is spec
        del model, state


# ---------------------------------------------------------------------------- building


def _config_values(model: torch.nn.Module) -> dict:
    """Every plain attribute of every submodule: the model's whole configuration."""
    values = {}
    for name, module in model.named_modules():
        for attr, value in vars(module).items():
            if attr.startswith("_"):
                continue
            if isinstance(value, bool | int | float | str | tuple | list | type(None)):
                values[f"{name}.{attr}"] = value
            elif isinstance(value, torch.Tensor):
                values[f"{name}.{attr}"] = value.tolist()
    return values


@pytest.mark.parametrize("corrections", ["upstream", "keep"])
def test_build_predictor_equals_meta_builder(random_checkpoint, corrections):
    """Same weights and the same configuration, attribute for attribute, as Meta's
    ``build_sam2_video_predictor(cfg, ckpt, device)`` (``keep`` adds exactly one flag)."""
    from sam2.sam2_video_predictor import SAM2VideoPredictor

    ours = quiet_build(TINY, random_checkpoint, device="cpu", corrections=corrections)
    extra = ["++model.add_all_frames_to_correct_as_cond=true"] if corrections == "keep" else []
    meta = meta_build(TINY.config, random_checkpoint, extra)

    assert type(ours) is SAM2VideoPredictor and not ours.training
    ours_sd, meta_sd = ours.state_dict(), meta.state_dict()
    assert ours_sd.keys() == meta_sd.keys()
    assert all(torch.equal(ours_sd[k], meta_sd[k]) for k in meta_sd)
    assert _config_values(ours) == _config_values(meta)
    # Meta's post-processing defaults are in place.
    assert ours.fill_hole_area == 8
    assert ours.binarize_mask_from_pts_for_mem_enc is True
    assert ours.non_overlap_masks is False
    assert ours.image_size == 1024
    assert ours.sam_mask_decoder.dynamic_multimask_via_stability is True
    assert ours.add_all_frames_to_correct_as_cond is (corrections == "keep")


def _write_jpeg_folder(folder: Path, frames: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{i:05d}.jpg", quality=95)
    return folder


@pytest.mark.skipif(
    importlib.util.find_spec("sam2._C") is not None,
    reason="sam2's extension is built here: it never warns",
)
def test_512_predictor_runs_a_click_and_the_extension_warning_is_silenced(
    random_checkpoint, tmp_path
):
    predictor = quiet_build(TINY, random_checkpoint, device="cpu", image_size=512)
    assert predictor.image_size == 512
    assert predictor.sam_image_embedding_size == 32
    for layer in predictor.memory_attention.layers:
        # RoPE tables sized for a 32x32 grid: sam2 would rebuild them per call otherwise.
        assert layer.self_attn.freqs_cis.shape[0] == 32 * 32
        assert layer.cross_attn_image.freqs_cis.shape[0] == 32 * 32

    frames = synth.make_frames(num_frames=2, height=120, width=160)
    folder = _write_jpeg_folder(tmp_path / "frames", frames)
    disc = synth.DEFAULT_DISCS[0]
    with torch.inference_mode():
        state = predictor.init_state(str(folder))
        assert state["images"].shape == (2, 3, 512, 512)
        with warnings.catch_warnings(record=True) as silenced:
            warnings.simplefilter("always")
            silence_missing_extension_warning()
            frame_idx, obj_ids, logits = predictor.add_new_points_or_box(
                state,
                frame_idx=0,
                obj_id=1,
                points=np.array([disc.center(0)], np.float32),
                labels=np.array([1], np.int32),
            )
            # Other warnings, even from the same module, still get through.
            warnings.warn_explicit(
                "something else", UserWarning, "x.py", 1, module="sam2.sam2_video_predictor"
            )
        with warnings.catch_warnings(record=True) as unfiltered:
            warnings.simplefilter("always")
            predictor.add_new_points_or_box(
                state,
                frame_idx=1,
                obj_id=1,
                points=np.array([disc.center(1)], np.float32),
                labels=np.array([1], np.int32),
            )

    assert frame_idx == 0 and list(obj_ids) == [1]
    assert logits.shape == (1, 1, 120, 160) and torch.isfinite(logits).all()
    assert [str(w.message) for w in silenced] == ["something else"]
    missing = [w for w in unfiltered if re.match(MISSING_EXTENSION_MESSAGE, str(w.message))]
    assert missing, "sam2 no longer warns this way: the filter is stale"
    assert Path(missing[0].filename).name == "sam2_video_predictor.py"


@pytest.mark.parametrize("size", [272, 48, 1000])
def test_image_size_must_be_a_multiple_of_32(random_checkpoint, size):
    with pytest.raises(ValueError, match="multiple of 32"):
        build_predictor(TINY, random_checkpoint, device="cpu", image_size=size)


# ---------------------------------------------------------------------------- bad checkpoints


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, random_checkpoint) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad")
    data = random_checkpoint.read_bytes()
    files = {
        "random bytes": folder / "random.pt",
        "truncated": folder / "truncated.pt",
        "empty": folder / "empty.pt",
        "no model key": folder / "nomodel.pt",
        "bare tensor": folder / "tensor.pt",
        "folder": folder / "adir.pt",
    }
    files["random bytes"].write_bytes(np.random.default_rng(0).bytes(1 << 16))
    files["truncated"].write_bytes(data[: len(data) // 2])
    files["empty"].write_bytes(b"")
    torch.save({"state_dict": {"w": torch.zeros(2)}}, files["no model key"])
    torch.save(torch.zeros(3), files["bare tensor"])
    files["folder"].mkdir()
    return files


@pytest.mark.parametrize(
    "kind", ["random bytes", "truncated", "empty", "no model key", "bare tensor", "folder"]
)
def test_unusable_files_give_one_clear_sentence(bad_files, kind):
    path = bad_files[kind]
    with pytest.raises(CheckpointError) as err:
        load_state_dict(path)
    message = err.value.message
    assert path.name in message
    assert str(path.parent) not in message  # no server paths
    assert "PytorchStreamReader" not in message and "Traceback" not in message
    assert message.count(". ") == 0 and message.endswith(".")
    # The same file given to build_predictor fails the same way, before any build.
    with pytest.raises(CheckpointError):
        build_predictor(TINY, path, device="cpu")


def test_checkpoint_of_another_size_is_named(small_checkpoint):
    with pytest.raises(CheckpointError) as err:
        quiet_build(TINY, small_checkpoint, device="cpu", image_size=256)
    message = err.value.message
    assert message.startswith("This checkpoint does not match SAM 2.1 tiny")
    assert "looks like a SAM 2.1 small checkpoint" in message
    assert "weights are not part of it" in message
    assert message.endswith("choose the matching model or checkpoint.")


def test_sam2_checkpoint_loaded_as_sam21_counts_missing_weights(tmp_path):
    ckpt = write_random_checkpoint(tmp_path / "sam2_tiny.pt", "sam2-tiny", seed=2)
    with pytest.raises(CheckpointError) as err:
        quiet_build(TINY, ckpt, device="cpu", image_size=256)
    assert err.value.message == (
        "This checkpoint does not match SAM 2.1 tiny (it looks like a SAM 2 tiny checkpoint): "
        "3 weights are missing; choose the matching model or checkpoint."
    )


def test_random_checkpoint_is_reproducible_and_loads(random_checkpoint, tmp_path):
    again = write_random_checkpoint(tmp_path / "again.pt", "sam2.1-tiny", seed=0)
    a, b = load_state_dict(random_checkpoint), load_state_dict(again)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert len(a) == 471  # every weight of SAM 2.1 tiny
    assert not (tmp_path / "again.pt.part").exists()


# ---------------------------------------------------------------------------- identity, devices


def test_checkpoint_identity(tmp_path, random_checkpoint):
    rng = np.random.default_rng(0)
    a = tmp_path / "a.bin"
    a.write_bytes(rng.bytes(3 << 20))
    b = tmp_path / "b.bin"
    shutil.copy(a, b)
    assert checkpoint_identity(a) == checkpoint_identity(b)
    data = bytearray(a.read_bytes())
    data[0] ^= 1
    b.write_bytes(bytes(data))
    assert checkpoint_identity(a) != checkpoint_identity(b)
    b.write_bytes(a.read_bytes() + b"x")
    assert checkpoint_identity(a) != checkpoint_identity(b)
    small = tmp_path / "small.bin"
    small.write_bytes(b"tiny file")
    assert re.fullmatch(r"[0-9a-f]{16}", checkpoint_identity(small))
    assert checkpoint_identity(random_checkpoint) == checkpoint_identity(str(random_checkpoint))


def test_choose_device():
    assert choose_device("cpu") == torch.device("cpu")
    auto = choose_device("auto")
    if torch.cuda.is_available():
        assert auto.type == "cuda"
    elif torch.backends.mps.is_available():
        assert auto.type == "mps"
    else:
        assert auto == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(CheckpointError, match="SAM2WEB_DEVICE"):
            choose_device("cuda")
    if not torch.backends.mps.is_available():
        with pytest.raises(CheckpointError, match="SAM2WEB_DEVICE"):
            choose_device("mps")
    for bad in ("tpu", "gpu0"):
        with pytest.raises(CheckpointError, match="SAM2WEB_DEVICE"):
            choose_device(bad)


def test_autocast_context_cpu():
    for setting in ("auto", "0"):
        assert isinstance(autocast_context("cpu", setting), contextlib.nullcontext)
    with autocast_context(torch.device("cpu"), "1"):
        enabled = torch.is_autocast_enabled("cpu")
        dtype = torch.get_autocast_dtype("cpu")
    assert enabled is cpu_supports_bf16()
    if enabled:
        assert dtype == torch.bfloat16


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
def test_autocast_context_cuda():
    with autocast_context("cuda", "1"):
        assert torch.is_autocast_enabled("cuda")
        assert torch.get_autocast_dtype("cuda") == torch.bfloat16
    assert isinstance(autocast_context("cuda", "0"), contextlib.nullcontext)


def test_import_has_no_side_effects(tmp_path):
    code = (
        "import sys, sam2web.tracking.model, sam2web.tracking.checkpoints as m; "
        "heavy = [n for n in ('torch', 'sam2', 'huggingface_hub') if n in sys.modules]; "
        "print(heavy, len(m.MODELS))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.stdout.strip() == "[] 8"
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------- model cache


def test_model_cache_builds_once_for_concurrent_requests(random_checkpoint):
    cache = ModelCache(max_models=1)
    barrier = threading.Barrier(3)
    got: list = [None, None, None]

    def worker(i: int) -> None:
        barrier.wait()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got[i] = cache.get(TINY, random_checkpoint, "cpu", 256)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got[0] is not None and got[0] is got[1] is got[2]
    assert cache.builds == 1
    assert cache.get(TINY, str(random_checkpoint), torch.device("cpu"), 256) is got[0]
    assert cache.builds == 1

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other = cache.get(TINY, random_checkpoint, "cpu", 256, corrections="upstream")
    assert other is not got[0] and cache.builds == 2
    assert other.add_all_frames_to_correct_as_cond is False
    assert got[0].add_all_frames_to_correct_as_cond is True
    assert len(cache) == 1  # max_models=1: the older one was dropped


def test_model_cache_forgets_a_failed_build(bad_files, random_checkpoint):
    cache = ModelCache()
    with pytest.raises(CheckpointError):
        cache.get(TINY, bad_files["truncated"], "cpu", 256)
    assert len(cache) == 0 and cache.builds == 0


# ---------------------------------------------------------------------------- downloads


class FakeHub:
    """A local stand-in for the Hugging Face Hub's file endpoints.

    ``/{org}/{repo}/resolve/{revision}/{filename}`` answers like the Hub for an LFS file:
    302 to a storage URL on another host name (``localhost`` vs the endpoint's
    ``127.0.0.1``, so huggingface_hub treats it as a CDN), with ``X-Repo-Commit``,
    ``X-Linked-Etag`` (the file's sha256) and ``X-Linked-Size``. ``/storage/{sha256}``
    serves the bytes. Unknown files: 404 with ``X-Error-Code: EntryNotFound``, as the Hub.
    """

    commit = hashlib.sha1(b"sam2web test commit").hexdigest()

    def __init__(self):
        self.files: dict[str, Path] = {}  # "org/repo/filename" -> file
        self.blobs: dict[str, Path] = {}  # sha256 -> file
        self.requests: list[tuple[str, str]] = []
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_HEAD(self):
                hub._answer(self, body=False)

            def do_GET(self):
                hub._answer(self, body=True)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def add(self, repo: str, filename: str, path: Path) -> str:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        sha = digest.hexdigest()
        self.files[f"{repo}/{filename}"] = path
        self.blobs[sha] = path
        return sha

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def _answer(self, handler, body: bool):
        self.requests.append((handler.command, handler.path))
        parts = handler.path.split("?")[0].strip("/").split("/")
        if len(parts) == 2 and parts[0] == "storage" and parts[1] in self.blobs:
            path = self.blobs[parts[1]]
            handler.send_response(200)
            handler.send_header("Content-Length", str(path.stat().st_size))
            handler.send_header("Content-Type", "application/octet-stream")
            handler.send_header("ETag", f'"{parts[1]}"')
            handler.end_headers()
            if body:
                with path.open("rb") as f:
                    shutil.copyfileobj(f, handler.wfile, 1 << 20)
            return
        if len(parts) >= 5 and parts[2] == "resolve":
            key = f"{parts[0]}/{parts[1]}/{'/'.join(parts[4:])}"
            if key in self.files:
                path = self.files[key]
                sha = next(s for s, p in self.blobs.items() if p == path)
                handler.send_response(302)
                handler.send_header("Location", f"http://localhost:{self.port}/storage/{sha}")
                handler.send_header("X-Repo-Commit", self.commit)
                handler.send_header("X-Linked-Etag", f'"{sha}"')
                handler.send_header("X-Linked-Size", str(path.stat().st_size))
                handler.send_header("ETag", '"pointer-etag"')
                handler.send_header("Content-Length", "0")
                handler.end_headers()
                return
            handler.send_response(404)
            handler.send_header("X-Repo-Commit", self.commit)
            handler.send_header("X-Error-Code", "EntryNotFound")
            handler.send_header("X-Error-Message", "Entry not found")
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        handler.send_response(404)
        handler.send_header("Content-Length", "0")
        handler.end_headers()


@pytest.fixture
def hub(monkeypatch, random_checkpoint):
    import huggingface_hub.constants

    fake = FakeHub()
    fake.sha = fake.add(TINY.hf_repo, TINY.filename, random_checkpoint)
    monkeypatch.setenv("HF_ENDPOINT", fake.endpoint)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    # huggingface_hub reads HF_HUB_OFFLINE at import; make sure this run may use the network.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    yield fake
    fake.close()


def test_download_reports_progress_and_is_cached(hub, tmp_path, random_checkpoint):
    cache_dir = tmp_path / "cache"
    calls: list[tuple[int, int | None]] = []
    path = resolve_checkpoint(
        TINY,
        checkpoint=None,
        cache_dir=cache_dir,
        offline=False,
        progress=lambda done, total: calls.append((done, total)),
    )

    size = random_checkpoint.stat().st_size
    assert path.is_relative_to(cache_dir) and path.name == TINY.filename
    assert path.stat().st_size == size
    assert checkpoint_identity(path) == checkpoint_identity(random_checkpoint)
    assert path.resolve().name == hub.sha  # huggingface_hub's blob store
    assert [m for m, _ in hub.requests] == ["HEAD", "GET"]
    assert hub.requests[1][1] == f"/storage/{hub.sha}"
    # Progress: bytes, increasing, ending at the file size.
    done = [d for d, _ in calls]
    assert len(calls) >= 10 and done == sorted(done) and done[0] < done[-1]
    assert calls[-1] == (size, size) and all(t == size for _, t in calls)

    # Second time: from the cache, without touching the network (online or offline).
    seen = len(hub.requests)
    assert resolve_checkpoint(TINY, checkpoint=None, cache_dir=cache_dir, offline=False) == path
    assert resolve_checkpoint(TINY, checkpoint=None, cache_dir=cache_dir, offline=True) == path
    assert len(hub.requests) == seen


def test_download_of_a_missing_file_names_the_setting(hub, tmp_path):
    small = get_spec("sam2.1-small")
    with pytest.raises(CheckpointError) as err:
        resolve_checkpoint(small, checkpoint=None, cache_dir=tmp_path / "cache", offline=False)
    message = err.value.message
    assert hub.requests == [("HEAD", f"/{small.hf_repo}/resolve/main/{small.filename}")]
    assert message == (
        "Could not download the SAM 2.1 small checkpoint: the Hub has no "
        "facebook/sam2.1-hiera-small/sam2.1_hiera_small.pt; download sam2.1_hiera_small.pt "
        "yourself and set SAM2WEB_CHECKPOINT to its path."
    )


def test_download_from_a_non_hub_server_fails_cleanly(hub, tmp_path, monkeypatch):
    """An endpoint that answers, but not like the Hub (a captive portal, a wrong mirror)."""
    monkeypatch.setenv("HF_ENDPOINT", f"{hub.endpoint}/not-a-hub")
    with pytest.raises(CheckpointError) as err:
        resolve_checkpoint(TINY, checkpoint=None, cache_dir=tmp_path / "cache", offline=False)
    assert err.value.message == (
        "Could not download the SAM 2.1 tiny checkpoint (no internet connection?); download "
        "sam2.1_hiera_tiny.pt yourself and set SAM2WEB_CHECKPOINT to its path."
    )


def test_download_with_the_server_down(hub, tmp_path, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(CheckpointError, match="no internet connection"):
        resolve_checkpoint(TINY, checkpoint=None, cache_dir=tmp_path / "cache", offline=False)
    assert not list((tmp_path / "cache").rglob("*.pt"))


def test_offline_without_cache_never_touches_the_network(hub, tmp_path):
    with pytest.raises(CheckpointError) as err:
        resolve_checkpoint(TINY, checkpoint=None, cache_dir=tmp_path / "cache", offline=True)
    assert "SAM2WEB_OFFLINE=1" in err.value.message
    assert "SAM2WEB_CHECKPOINT" in err.value.message
    assert hub.requests == []


def test_explicit_and_plain_cached_checkpoints(hub, tmp_path):
    missing = tmp_path / "nowhere" / "sam2.1_hiera_tiny.pt"
    with pytest.raises(CheckpointError) as err:
        resolve_checkpoint(TINY, checkpoint=missing, cache_dir=tmp_path, offline=False)
    assert "SAM2WEB_CHECKPOINT" in err.value.message
    assert str(missing.parent) not in err.value.message

    explicit = tmp_path / "mine.pt"
    explicit.write_bytes(b"x")
    assert (
        resolve_checkpoint(TINY, checkpoint=explicit, cache_dir=tmp_path / "c", offline=True)
        == explicit
    )

    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    (cache_dir / TINY.filename).write_bytes(b"x")
    assert (
        resolve_checkpoint(TINY, checkpoint=None, cache_dir=cache_dir, offline=False)
        == cache_dir / TINY.filename
    )
    assert hub.requests == []
