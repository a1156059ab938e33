"""Deployment files: the Dockerfile (lint-clean, installs like scripts/setup.sh) and the
README (Hugging Face Spaces front matter, every setting documented)."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from sam2web.settings import SETTINGS

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
SETUP_SH = ROOT / "scripts" / "setup.sh"
README = ROOT / "README.md"
REQUIREMENTS = ROOT / "requirements.txt"

# Colours Hugging Face Spaces accepts for colorFrom / colorTo.
SPACES_COLORS = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}


# --- shell and Dockerfile parsing -------------------------------------------------------

CONTROL = {"&&", "||", ";", "|"}
PIP_OPTIONS_WITH_VALUE = {
    "-r",
    "--requirement",
    "-i",
    "--index-url",
    "--extra-index-url",
    "-c",
    "--constraint",
    "-f",
    "--find-links",
}


@dataclass
class PipCall:
    """One `pip install` / `pip uninstall` command, split into its parts."""

    verb: str
    env: dict[str, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)
    options: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)


def _commands(shell: str) -> list[list[str]]:
    """Simple commands in a piece of shell, comments and redirections dropped."""
    commands: list[list[str]] = []
    for line in shell.splitlines():
        current: list[str] = []
        tokens = iter(shlex.split(line, comments=True))
        for token in tokens:
            if token in CONTROL:
                commands.append(current)
                current = []
            elif re.fullmatch(r"\d*>{1,2}&?", token):
                next(tokens, None)  # redirection with its target in the next token
            elif re.match(r"\d*>", token):
                continue  # redirection with its target attached, e.g. >/dev/null or 2>&1
            else:
                current.append(token)
        commands.append(current)
    return [c for c in commands if c]


def _pip_calls(shell: str) -> list[PipCall]:
    calls = []
    for tokens in _commands(shell):
        verb_at = next((i for i, t in enumerate(tokens) if t in ("install", "uninstall")), None)
        if verb_at is None or not any("pip" in t.lower() for t in tokens[:verb_at]):
            continue
        call = PipCall(verb=tokens[verb_at])
        for token in tokens[:verb_at]:
            if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", token):
                name, value = token.split("=", 1)
                call.env[name] = value
        rest = iter(tokens[verb_at + 1 :])
        for token in rest:
            if token in PIP_OPTIONS_WITH_VALUE:
                call.options[token] = next(rest)
            elif token.startswith("-"):
                call.flags.add(token)
            else:
                call.args.append(token)
        calls.append(call)
    return calls


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


def _dockerfile_pip_calls() -> list[PipCall]:
    return [
        call for kw, body in _instructions(DOCKERFILE) if kw == "RUN" for call in _pip_calls(body)
    ]


def _setup_sh_pip_calls() -> list[PipCall]:
    return _pip_calls(SETUP_SH.read_text())


def _only(calls: list[PipCall], what: str, predicate) -> PipCall:
    found = [c for c in calls if predicate(c)]
    assert len(found) == 1, f"expected one {what}, found {len(found)}: {found}"
    return found[0]


def _install_steps(calls: list[PipCall], source: str) -> tuple[PipCall, PipCall, PipCall]:
    torch = _only(
        calls,
        f"torch install in {source}",
        lambda c: c.verb == "install" and any(a.startswith("torch") for a in c.args),
    )
    reqs = _only(
        calls,
        f"requirements install in {source}",
        lambda c: c.verb == "install" and "-r" in c.options,
    )
    uninstall = _only(calls, f"uninstall in {source}", lambda c: c.verb == "uninstall")
    return torch, reqs, uninstall


# --- Dockerfile ---------------------------------------------------------------------------


def _hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    if beside_python.is_file():
        return str(beside_python)
    return shutil.which("hadolint")


def test_dockerfile_is_lint_clean(tmp_path):
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install -r requirements-dev.txt)")
    config = tmp_path / "hadolint.yaml"  # ours only, so no user or project config applies
    config.write_text("failure-threshold: style\n")
    result = subprocess.run(
        [hadolint, "--config", str(config), "--no-color", "--format", "json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.stdout.strip(), f"hadolint printed nothing: {result.stderr}"
    findings = json.loads(result.stdout)
    assert findings == [], "hadolint findings:\n" + "\n".join(
        f"  line {f['line']}: {f['code']} ({f['level']}) {f['message']}" for f in findings
    )
    assert result.returncode == 0, result.stderr


def test_dockerfile_installs_like_setup_sh():
    docker_torch, docker_reqs, docker_uninstall = _install_steps(
        _dockerfile_pip_calls(), "Dockerfile"
    )
    setup_torch, setup_reqs, setup_uninstall = _install_steps(_setup_sh_pip_calls(), "setup.sh")

    # Step 1: torch at the same pin, with the same build tools.
    assert setup_torch.args == docker_torch.args
    torch_pin = next(a for a in docker_torch.args if a.startswith("torch"))
    assert torch_pin.startswith("torch==") and torch_pin in _requirement_lines(), (
        f"{torch_pin} must be the exact torch pin of requirements.txt"
    )

    # Step 2: the requirements, without build isolation and without sam2's CUDA extension.
    assert setup_reqs.env.get("SAM2_BUILD_CUDA") == docker_reqs.env.get("SAM2_BUILD_CUDA") == "0"
    assert "--no-build-isolation" in setup_reqs.flags
    assert "--no-build-isolation" in docker_reqs.flags
    assert docker_reqs.options["-r"] == "requirements.txt"
    runtime_reqs = re.search(r"^reqs=\((\S+)\)", SETUP_SH.read_text(), re.MULTILINE)
    assert runtime_reqs and runtime_reqs.group(1) == "requirements.txt"

    # Step 3: torchvision removed.
    assert setup_uninstall.args == docker_uninstall.args == ["torchvision"]
    assert "-y" in docker_uninstall.flags

    # In the same order.
    calls = _dockerfile_pip_calls()
    order = [calls.index(c) for c in (docker_torch, docker_reqs, docker_uninstall)]
    assert order == sorted(order), (
        "Dockerfile must install torch, then requirements, then uninstall"
    )
    # pip's cache stays out of the image: a build cache mount for it, or no cache at all.
    for kw, body in _instructions(DOCKERFILE):
        cache_mount = "--mount=type=cache,target=/root/.cache/pip" in body.split()
        for call in _pip_calls(body) if kw == "RUN" else []:
            assert call.verb != "install" or cache_mount or "--no-cache-dir" in call.flags, (
                "pip install in the image needs a cache mount for /root/.cache/pip "
                "or --no-cache-dir"
            )


def test_dockerfile_torch_index_defaults_to_cpu():
    args = dict(
        body.split("=", 1) for kw, body in _instructions(DOCKERFILE) if kw == "ARG" and "=" in body
    )
    assert args.get("TORCH_INDEX_URL") == "https://download.pytorch.org/whl/cpu"
    torch, _, _ = _install_steps(_dockerfile_pip_calls(), "Dockerfile")
    assert torch.options.get("--index-url") == "$TORCH_INDEX_URL"


def test_dockerfile_runs_the_app_unprivileged_with_a_checkpoint_volume():
    instructions = _instructions(DOCKERFILE)
    kinds = [kw for kw, _ in instructions]
    # The official slim image unless a build argument names a stand-in.
    assert instructions[0] == ("ARG", "BASE_IMAGE=python:3.11-slim-bookworm")
    assert instructions[1] == ("FROM", "${BASE_IMAGE}")

    users = [body for kw, body in instructions if kw == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")

    env: dict[str, str] = {}
    for kw, body in instructions:
        if kw == "ENV":
            env.update(token.split("=", 1) for token in shlex.split(body))
    port = next(s.default for s in SETTINGS if s.name == "SAM2WEB_PORT")
    assert env["SAM2WEB_HOST"] == "0.0.0.0"
    assert env.get("SAM2WEB_PORT", port) == port
    assert env["SAM2WEB_DATA_DIR"].startswith("/")
    volumes = [body for kw, body in instructions if kw == "VOLUME"]
    assert env["SAM2WEB_CACHE_DIR"] in volumes

    assert ("EXPOSE", port) in instructions
    assert "HEALTHCHECK" in kinds
    health = next(body for kw, body in instructions if kw == "HEALTHCHECK")
    assert "127.0.0.1" in health and "timeout" in health
    assert instructions[-1] == ("CMD", '["python", "app.py"]')

    # Everything the image copies is let into the build context by .dockerignore.
    allowed = {
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    for kw, body in instructions:
        if kw == "COPY":
            for source in shlex.split(body)[:-1]:
                assert source.rstrip("/") in allowed, f"{source} is excluded by .dockerignore"
                assert (ROOT / source).exists()


# --- README ------------------------------------------------------------------------------


def _readme() -> str:
    if not README.is_file():
        pytest.fail(
            "README.md is missing: it must start with the Hugging Face Spaces front "
            "matter (docs/README_FRONT_MATTER.md) and contain the settings table "
            "(python scripts/settings_table.py)."
        )
    return README.read_text(encoding="utf-8")


def _requirement_lines() -> list[str]:
    lines = []
    for line in REQUIREMENTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            lines.append(line)
    return lines


def test_readme_front_matter_is_a_valid_gradio_space():
    text = _readme()
    match = re.match(r"---\n(.*?)\n---\n", text, re.DOTALL)
    assert match, "README.md must begin with a '---' YAML front matter block for Spaces"
    meta = yaml.safe_load(match.group(1))
    assert isinstance(meta, dict), "the README front matter must be a YAML mapping"

    assert meta.get("sdk") == "gradio"
    assert meta.get("app_file") == "app.py"
    assert (ROOT / meta["app_file"]).is_file()
    assert isinstance(meta.get("title"), str) and meta["title"]
    assert meta.get("colorFrom") in SPACES_COLORS and meta.get("colorTo") in SPACES_COLORS
    assert isinstance(meta.get("pinned"), bool)
    assert len(meta.get("short_description", "")) <= 60, "Spaces cut short_description at 60"

    # sdk_version is the Gradio version the app is tested with; it must satisfy
    # requirements.txt. A bare 6.30 in YAML would be a float, hence the str() check.
    sdk_version = meta.get("sdk_version")
    assert isinstance(sdk_version, str), "quote sdk_version or write all three parts"
    gradio = next(Requirement(r) for r in _requirement_lines() if Requirement(r).name == "gradio")
    assert Version(sdk_version) in gradio.specifier, (
        f"sdk_version {sdk_version} does not satisfy requirements.txt's {gradio}"
    )
    if "python_version" in meta:
        assert isinstance(meta["python_version"], str), 'quote python_version, e.g. "3.11"'


def _settings_rows(text: str) -> dict[str, str]:
    """{name: default cell} for table rows whose first cell is a SAM2WEB_ setting."""
    rows = {}
    for line in text.splitlines():
        if not line.lstrip().startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and re.fullmatch(r"`?SAM2WEB_[A-Z0-9_]+`?", cells[0]):
            rows[cells[0].strip("`")] = cells[1]
    return rows


def _load_settings_table_script():
    spec = importlib.util.spec_from_file_location(
        "settings_table", ROOT / "scripts" / "settings_table.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_documents_every_setting():
    rows = _settings_rows(_readme())
    table = _load_settings_table_script()
    missing = [s.name for s in SETTINGS if s.name not in rows]
    assert not missing, (
        f"README.md's settings table lacks {', '.join(missing)}; "
        "regenerate it with python scripts/settings_table.py"
    )
    wrong = {
        s.name: rows[s.name] for s in SETTINGS if rows[s.name] != table.format_default(s.default)
    }
    assert not wrong, f"README.md shows stale defaults: {wrong}"
    unknown = set(rows) - {s.name for s in SETTINGS}
    assert not unknown, f"README.md documents settings that do not exist: {sorted(unknown)}"


def test_settings_table_script_lists_every_setting():
    table = _load_settings_table_script().settings_table()
    rows = _settings_rows(table)
    assert list(rows) == [s.name for s in SETTINGS]
    assert rows["SAM2WEB_CHECKPOINT"] == "*(empty)*"
    assert rows["SAM2WEB_PORT"] == "`7860`"


def test_host_and_port_fall_back_to_gradios_own_variables():
    from sam2web.settings import Settings

    platform = {"GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": "8080"}
    s = Settings.from_env(platform)
    assert (s.host, s.port) == ("127.0.0.1", 8080)
    # sam2web's own variables win; an empty one counts as unset.
    s = Settings.from_env({**platform, "SAM2WEB_HOST": "::", "SAM2WEB_PORT": "9000"})
    assert (s.host, s.port) == ("::", 9000)
    s = Settings.from_env({**platform, "SAM2WEB_HOST": " ", "SAM2WEB_PORT": ""})
    assert (s.host, s.port) == ("127.0.0.1", 8080)
    s = Settings.from_env({})
    assert (s.host, s.port) == ("0.0.0.0", 7860)
