"""What a Hugging Face Space installs: pre-requirements.txt, then requirements.txt, each with
plain `pip install -r` (no option of scripts/setup.sh's reaches it), and the Python its front
matter names. Read as files only; nothing is downloaded."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PRE_REQUIREMENTS = ROOT / "pre-requirements.txt"
REQUIREMENTS = ROOT / "requirements.txt"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# The Pythons ZeroGPU runs, as the Hub's "Spaces ZeroGPU" page lists them (Supported Versions).
ZEROGPU_PYTHONS = ("3.12.12", "3.10.13")
# The oldest torch that page supports ("from 2.8.0 to latest").
ZEROGPU_OLDEST_TORCH = Version("2.8.0")


def _parse(path: Path) -> tuple[list[tuple[str, str]], dict[str, Requirement]]:
    """(options, {name: requirement}) of a requirements file, comments dropped."""
    options: list[tuple[str, str]] = []
    requirements: dict[str, Requirement] = {}
    for raw in path.read_text().splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            name, _, value = line.partition(" ")
            if "=" in name:
                name, value = name.split("=", 1)
            options.append((name, value.strip()))
        else:
            requirement = Requirement(line)
            requirements[requirement.name] = requirement
    return options, requirements


def _torch_pin(requirement: Requirement) -> Version:
    specs = list(requirement.specifier)
    assert len(specs) == 1 and specs[0].operator == "==", f"torch must be pinned: {requirement}"
    return Version(specs[0].version)


def _front_matter(path: Path) -> dict:
    match = re.match(r"---\n(.*?)\n---\n", path.read_text(encoding="utf-8"), re.DOTALL)
    assert match, f"{path.name} has no front matter"
    return yaml.safe_load(match.group(1))


def _spaces_section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return text.split("\n## Hugging Face Spaces\n", 1)[1].split("\n## ", 1)[0]


def test_a_cpu_space_installs_torchs_cpu_build_before_everything_else():
    assert PRE_REQUIREMENTS.is_file(), (
        "pre-requirements.txt must install torch's CPU build before requirements.txt"
    )
    options, requirements = _parse(PRE_REQUIREMENTS)
    assert set(requirements) == {"torch"}, "pre-requirements.txt installs torch alone"
    assert ("--extra-index-url", CPU_INDEX) in options or ("--index-url", CPU_INDEX) in options
    pin = _torch_pin(requirements["torch"])
    # Only PyTorch's CPU index has +cpu builds: without it the install fails, it cannot fall
    # back to PyPI's CUDA build.
    assert pin.local == "cpu", f"pre-requirements.txt must pin a +cpu build, not {pin}"
    # requirements.txt's own pin is then already satisfied: pip keeps the CPU build.
    _, runtime = _parse(REQUIREMENTS)
    assert runtime["torch"].specifier.contains(pin), (
        f"requirements.txt's {runtime['torch']} would replace the installed {pin}"
    )
    assert _torch_pin(runtime["torch"]).public == pin.public


def test_sam2s_isolated_build_can_only_take_a_cpu_torch():
    """pip builds sam2 (a source distribution that asks for torch at build time) in an
    environment of its own, with the indexes of the run that installs requirements.txt."""
    options, requirements = _parse(REQUIREMENTS)
    assert "sam2" in requirements
    assert ("--extra-index-url", CPU_INDEX) in options, (
        "requirements.txt must name PyTorch's CPU index, or the build environment of sam2 "
        "takes PyPI's CUDA build of the newest torch"
    )
    # Of the same release on both indexes, the +cpu build is the newer candidate.
    assert Version("2.15.0+cpu") > Version("2.15.0")
    assert Version("2.13.0+cpu") > Version("2.13.0")


def test_pip_accepts_every_line_of_the_spaces_files():
    req_file = pytest.importorskip("pip._internal.req.req_file")
    session = pytest.importorskip("pip._internal.network.session")
    for path in (PRE_REQUIREMENTS, REQUIREMENTS):
        parsed = list(req_file.parse_requirements(str(path), session=session.PipSession()))
        names = {Requirement(p.requirement).name for p in parsed}
        assert names == set(_parse(path)[1]), path.name


def test_local_installs_leave_the_spaces_index_line_out():
    """scripts/setup.sh, scripts/setup-zerogpu.sh and the image build sam2 without isolation
    against the torch they installed first; the index line would only make pip ask it for
    every package (a wait per package where it is out of reach)."""
    lines = REQUIREMENTS.read_text().splitlines()
    patterns = {
        "setup.sh": re.search(
            r"grep -vE '([^']+)' \"\$file\"", (ROOT / "scripts/setup.sh").read_text()
        ),
        "setup-zerogpu.sh": re.search(
            r"grep -vE '([^']+)' requirements.txt", (ROOT / "scripts/setup-zerogpu.sh").read_text()
        ),
        "Dockerfile": re.search(
            r"sed -i '/([^/]+)/d' requirements.txt", (ROOT / "Dockerfile").read_text()
        ),
    }
    for where, found in patterns.items():
        assert found, f"{where} must drop requirements.txt's index line before installing"
        kept = [line for line in lines if not re.search(found.group(1), line)]
        assert not [line for line in kept if line.startswith("--")], where
        assert "sam2==1.1.0" in kept, where
    setup = (ROOT / "scripts/setup.sh").read_text()
    install = next(line for line in setup.splitlines() if "--no-build-isolation" in line)
    assert "$copies/" in shlex.join(shlex.split(install)), "setup.sh installs the copies"


def test_the_front_matter_names_a_python_zerogpu_runs():
    section = _spaces_section()
    for version in ZEROGPU_PYTHONS:
        assert version in section, f"README's Spaces section must cite ZeroGPU's Python {version}"
    python = _front_matter(ROOT / "README.md")["python_version"]
    minors = {".".join(v.split(".")[:2]) for v in ZEROGPU_PYTHONS}
    assert python in ZEROGPU_PYTHONS or python in minors, (
        f'python_version "{python}" is not one ZeroGPU runs: {", ".join(ZEROGPU_PYTHONS)}'
    )
    copy = _front_matter(ROOT / "docs" / "README_FRONT_MATTER.md")["python_version"]
    assert copy == python, "docs/README_FRONT_MATTER.md must show the README's front matter"


def test_the_zerogpu_torch_is_a_cuda_release_zerogpu_supports():
    _, requirements = _parse(ROOT / "requirements-zerogpu.txt")
    pin = _torch_pin(requirements["torch"])
    assert pin.local is None, "ZeroGPU's spaces package needs PyPI's CUDA build"
    assert pin >= ZEROGPU_OLDEST_TORCH
