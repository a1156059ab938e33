# sam2web: click-to-track video segmentation with SAM2, served on port 7860.
#
#   CPU image (default):  docker build -t sam2web .
#   CUDA image:           docker build -t sam2web:cuda \
#                           --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
#
# Build arguments for a machine that reaches packages in its own way (all optional):
#   BASE_IMAGE      another image with Python 3.11, python -m venv and ca-certificates;
#   PIP_INDEX_URL   the index for everything but torch (and torch's fallback);
#   PIP_FIND_LINKS  a folder or page of wheels pip also looks in (mount it for the build);
#   PIP_CERT        a certificate bundle pip trusts, e.g. a proxy's (mount it for the build).
#
# No system packages are installed on top of the base image: every compiled wheel sam2web
# uses (torch, opencv-python-headless, pycocotools, numpy, pillow, ...) bundles its own
# libraries and needs only glibc, libgcc, libstdc++ and zlib, which the slim image has.
# opencv-python-headless links no GUI stack, so neither libGL nor libglib is needed.
# imageio-ffmpeg ships its own ffmpeg binary, and the app encodes browser-ready H.264 MP4
# with it, so Gradio never needs a system ffmpeg. The source distributions in the tree
# (sam2 with SAM2_BUILD_CUDA=0, iopath, antlr4-python3-runtime) build without a compiler.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

# Package index torch is installed from. PyTorch's CPU-only index keeps the image small;
# a CUDA index (e.g. https://download.pytorch.org/whl/cu128) gives the CUDA build of the
# same torch version, to be run with `docker run --gpus all`.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# pip reads these three from the environment the build steps see; empty means pip's own
# default. They are build arguments only, so nothing of them stays in the image.
ARG PIP_INDEX_URL=https://pypi.org/simple
ARG PIP_FIND_LINKS=
ARG PIP_CERT=

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    MPLCONFIGDIR=/tmp/matplotlib

RUN python -m venv /opt/venv

WORKDIR /app
COPY requirements.txt ./

# The same three steps as scripts/setup.sh (tests/test_deploy.py keeps them in step).
# 1. torch first: sam2 1.1.0 is a source distribution whose build imports torch. The torch
#    index comes first so its build (2.13.0+cpu or +cuXXX) is chosen; PIP_INDEX_URL (PyPI)
#    is the fallback for setuptools, wheel and torch's own dependencies (with a CUDA index,
#    the nvidia-* wheels come from that index). A local-version build (+cpu, +cuXXX) sorts
#    above PyPI's plain 2.13.0, so a wheel in PIP_FIND_LINKS is chosen the same way. The build tools are bounded exactly as in setup.sh, which
#    leaves wheel unpinned (hadolint's DL3013); everything the app runs on is pinned
#    through requirements.txt.
# pip's download and wheel cache is a build cache mount: a rebuild after a change of
# requirements.txt downloads only what changed, and none of it stays in the image.
# hadolint ignore=DL3013
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --index-url "$TORCH_INDEX_URL" \
        --extra-index-url "$PIP_INDEX_URL" \
        "torch==2.13.0" "setuptools>=70" wheel
# 2. The requirements; SAM2_BUILD_CUDA=0 skips sam2's optional CUDA extension, which only
#    accelerates hole filling. torch==2.13.0 is already satisfied by step 1. The file's
#    --extra-index-url line is for a Hugging Face Space, whose pip builds sam2 in isolation;
#    here sam2 builds against step 1's torch, so the image's copy drops that line.
# 3. sam2 declares torchvision, but the video predictor never imports it and a torchvision
#    wheel built for another torch breaks at import; keep it out.
RUN --mount=type=cache,target=/root/.cache/pip \
    sed -i '/^--extra-index-url/d' requirements.txt \
    && SAM2_BUILD_CUDA=0 pip install --no-build-isolation -r requirements.txt \
    && pip uninstall -y torchvision

# An unprivileged user; /data holds the checkpoint cache (a volume) and the per-session
# folders (frames, masks, exports), both writable by that user.
RUN groupadd --gid 1000 sam2web \
    && useradd --create-home --uid 1000 --gid 1000 --shell /usr/sbin/nologin sam2web \
    && mkdir -p /data/checkpoints /data/sessions \
    && chown -R sam2web:sam2web /data

COPY app.py ./
COPY sam2web ./sam2web

USER 1000:1000

ENV SAM2WEB_HOST=0.0.0.0 \
    SAM2WEB_PORT=7860 \
    SAM2WEB_CACHE_DIR=/data/checkpoints \
    SAM2WEB_DATA_DIR=/data/sessions

# Downloaded checkpoints survive container restarts when this is a named volume; mount a
# folder of your own checkpoints here and point SAM2WEB_CHECKPOINT at one of them.
VOLUME /data/checkpoints

EXPOSE 7860

HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('SAM2WEB_PORT', '7860') + '/', timeout=5)"]

CMD ["python", "app.py"]
