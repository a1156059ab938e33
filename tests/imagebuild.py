"""Build the project's Dockerfile and run the image without a Docker engine.

Debian's buildah runs a Dockerfile's steps with chroot isolation, which needs no daemon and
no cgroups; mmdebstrap makes a Debian 12 root filesystem with Python 3.11 that stands in for
the official slim Python image where no registry can be reached. The image's working
container shares this machine's network, so a server inside that binds 127.0.0.1 is reached
from outside. The base tar and buildah's storage with its cached layers live in one cache
folder, so a rebuild with unchanged sources takes seconds; buildah keeps the Dockerfile's
cache mount for pip in /var/tmp/buildah-cache.

The README's ``docker build`` and ``docker run`` lines are translated here into the buildah
commands that do the same; ``python -m tests.imagebuild`` builds the image and prints its
figures.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("SAM2WEB_IMAGE_CACHE", "/var/tmp/sam2web-image"))
BASE_TAG = "localhost/sam2web-base:bookworm"
DEBIAN_MIRROR = os.environ.get("SAM2WEB_DEBIAN_MIRROR", "http://deb.debian.org/debian")
BASE_PACKAGES = "python3,python3-venv,python-is-python3,ca-certificates"
# Where this machine's certificate bundle is mounted for the build steps.
BUILD_CERT = "/etc/ssl/certs/host-ca.crt"


def buildah(*args: str) -> list[str]:
    """A buildah command on the cache folder's own storage (apart from any other images)."""
    return [
        "buildah",
        "--root",
        str(CACHE / "storage"),
        "--runroot",
        str(CACHE / "run"),
        "--storage-driver",
        "overlay",
        *args,
    ]


def run(cmd: list[str], timeout: float, log: Path | None = None) -> str:
    """Run a command to its end; its output, or a RuntimeError with the output's tail."""
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    output = result.stdout + result.stderr
    if log is not None:
        log.write_text(shlex.join(cmd) + "\n" + output)
    if result.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed ({result.returncode}):\n{output[-4000:]}")
    return result.stdout


def tools_missing() -> list[str]:
    return [t for t in ("buildah", "mmdebstrap") if shutil.which(t) is None]


# --- the stand-in base image ---------------------------------------------------------------


def image_exists(tag: str) -> bool:
    cmd = buildah("inspect", "--type", "image", "--format", "{{.FromImageID}}", tag)
    return subprocess.run(cmd, capture_output=True, timeout=60, check=False).returncode == 0


def build_base(timeout: float = 600) -> str:
    """Debian 12 minbase with Python 3.11 as a local image (made once, then kept)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    if image_exists(BASE_TAG):
        return BASE_TAG
    tar = CACHE / "base.tar"
    if not tar.is_file():
        part = CACHE / "base.part.tar"
        run(
            [
                "mmdebstrap",
                "--quiet",
                "--variant=minbase",
                f"--include={BASE_PACKAGES}",
                "bookworm",
                str(part),
                DEBIAN_MIRROR,
            ],
            timeout,
        )
        part.rename(tar)
    container = run(buildah("from", "scratch"), 60).strip()
    try:
        run(buildah("add", container, str(tar), "/"), timeout)
        run(buildah("config", "--cmd", "python3", container), 60)
        run(buildah("commit", "--format", "docker", container, BASE_TAG), timeout)
    finally:
        run(buildah("rm", container), 60)
    return BASE_TAG


# --- the project's image --------------------------------------------------------------------


def pip_config() -> dict[str, str]:
    """How this machine's pip reaches packages: index, wheel folders and certificate bundle."""
    out = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    ).stdout
    found: dict[str, str] = {}
    for line in out.splitlines():
        key, _, value = line.partition("=")
        found.setdefault(key.rsplit(".", 1)[-1], value.strip().strip("'\""))
    config = {
        "index-url": os.environ.get("PIP_INDEX_URL") or found.get("index-url", ""),
        "find-links": os.environ.get("PIP_FIND_LINKS") or found.get("find-links", ""),
        "cert": os.environ.get("PIP_CERT") or found.get("cert", ""),
    }
    return {k: v for k, v in config.items() if v}


def build_args(base: str) -> tuple[list[str], list[str]]:
    """(--build-arg options, --volume options) for what differs on this machine."""
    config = pip_config()
    index = config.get("index-url", "https://pypi.org/simple")
    args = {"BASE_IMAGE": base, "PIP_INDEX_URL": index}
    volumes: list[str] = []
    # PyTorch's own index may be out of reach; torch's CPU wheel then lies in a local
    # folder, and PyPI stands in for the index (a +cpu wheel sorts above PyPI's build).
    if not _reachable("https://download.pytorch.org/whl/cpu/torch/"):
        args["TORCH_INDEX_URL"] = index
    folders = [f for f in config.get("find-links", "").split() if Path(f).is_dir()]
    if folders:
        args["PIP_FIND_LINKS"] = " ".join(folders)
        volumes += [f"{f}:{f}:ro" for f in folders]
    if "cert" in config and Path(config["cert"]).is_file():
        args["PIP_CERT"] = BUILD_CERT
        volumes.append(f"{config['cert']}:{BUILD_CERT}:ro")
    arg_options = [o for k, v in args.items() for o in ("--build-arg", f"{k}={v}")]
    return arg_options, [o for v in volumes for o in ("--volume", v)]


def _reachable(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10):
            return True
    except OSError:
        return False


@dataclass
class Build:
    tag: str
    seconds: float
    command: list[str]
    log: Path


def build_image(docker_build: list[str], timeout: float = 1800) -> Build:
    """Run a ``docker build -t TAG .`` line with buildah, adding only this machine's
    build arguments and mounts; layers and pip's cache are kept between builds."""
    tag, context = _parse_build(docker_build)
    base = build_base()
    arg_options, volume_options = build_args(base)
    command = buildah(
        "bud",
        "--isolation",
        "chroot",
        "--format",
        "docker",  # the OCI format has no HEALTHCHECK
        "--layers",
        "-t",
        tag,
        *arg_options,
        *volume_options,
        str(ROOT / context),
    )
    log = CACHE / "build.log"
    start = time.monotonic()
    run(command, timeout, log)
    return Build(tag, time.monotonic() - start, command, log)


def _parse_build(line: list[str]) -> tuple[str, str]:
    assert line[:2] == ["docker", "build"], line
    rest = line[2:]
    tag = rest[rest.index("-t") + 1]
    extra = [t for t in rest if t not in ("-t", tag)]
    assert len(extra) == 1, f"only -t TAG CONTEXT is translated: {line}"
    return tag, extra[0]


def image_config(tag: str) -> dict:
    """The image's Docker config (Env, Cmd, User, WorkingDir, Healthcheck)."""
    out = run(buildah("inspect", "--type", "image", tag), 60)
    return json.loads(out)["Docker"]["config"]


def image_size(tag: str) -> str:
    """The image's size as buildah reports it (uncompressed layers, e.g. "1.88 GB")."""
    return run(buildah("images", "--format", "{{.Size}}", tag), 60).strip()


# --- running the image ----------------------------------------------------------------------


@dataclass
class DockerRun:
    """A ``docker run`` line taken apart: mounts, environment, published ports, image."""

    image: str
    volumes: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    ports: list[str] = field(default_factory=list)


def parse_run(line: list[str]) -> DockerRun:
    assert line[:2] == ["docker", "run"], line
    parsed = DockerRun(image="")
    tokens = iter(line[2:])
    for token in tokens:
        if token == "-v":
            parsed.volumes.append(next(tokens))
        elif token == "-e":
            name, _, value = next(tokens).partition("=")
            parsed.env[name] = value
        elif token == "-p":
            parsed.ports.append(next(tokens))
        elif token in ("--rm", "-d"):
            continue
        elif token.startswith("-"):
            raise AssertionError(f"{token} is not translated: {line}")
        else:
            parsed.image = token
    return parsed


@dataclass
class Container:
    """A working container of an image; commands run in it share this machine's network."""

    name: str
    volumes: list[str]

    @classmethod
    def create(cls, image: str, volumes: list[str], env: dict[str, str]) -> Container:
        name = run(buildah("from", "--pull-never", image), 120).strip()
        if env:
            run(buildah("config", *[f"--env={k}={v}" for k, v in env.items()], name), 60)
        return cls(name, volumes)

    def command(self, argv: list[str], user: str | None = None) -> list[str]:
        options = ["--isolation", "chroot"]
        if user is not None:
            options += ["--user", user]
        for volume in self.volumes:
            options += ["--volume", volume]
        return buildah("run", *options, self.name, "--", *argv)

    def run(self, argv: list[str], user: str | None = None, timeout: float = 120) -> str:
        return run(self.command(argv, user), timeout)

    def start(self, argv: list[str], user: str, log: Path) -> subprocess.Popen:
        with open(log, "wb") as out:  # the child keeps its own copy of the descriptor
            return subprocess.Popen(
                self.command(argv, user),
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def remove(self) -> None:
        subprocess.run(buildah("rm", self.name), capture_output=True, timeout=120, check=False)


def healthcheck_argv(config: dict) -> list[str]:
    """The HEALTHCHECK's command as an argv (exec form, as the Dockerfile writes it)."""
    test = config["Healthcheck"]["Test"]
    assert test[0] == "CMD", f"only the exec form is run: {test}"
    return list(test[1:])


def main() -> None:
    from tests.test_docker import readme_docker_lines

    build_line = readme_docker_lines()["build"]
    built = build_image(build_line)
    size = image_size(built.tag)
    container = Container.create(built.tag, [], {})
    try:
        venv = container.run(["du", "-sm", "/opt/venv"]).split()[0]
        packages = container.run(["pip", "list", "--format=freeze"]).splitlines()
    finally:
        container.remove()
    print(f"build: {built.seconds:.0f} s ({shlex.join(built.command)})")
    print(f"image size: {size}")
    print(f"installed packages: {len(packages)}, /opt/venv {venv} MB")


if __name__ == "__main__":
    main()
