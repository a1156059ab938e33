#!/usr/bin/env bash
# Installs sam2web's requirements as a Hugging Face CPU Space does, into a new virtual
# environment, and prints the time, the environment's size and the torch builds pip fetched.
#
#   bash benchmarks/space_install.sh [REV]
#
# REV is a git revision whose pre-requirements.txt and requirements.txt are installed (default:
# the working tree's). The Space's steps: `pip install -r pre-requirements.txt` where that file
# exists, then `pip install -r requirements.txt`, both with --no-cache-dir and with pip's own
# defaults only: no configuration file, PyPI as the index, build isolation on.
#
# Where PyTorch's CPU index (https://download.pytorch.org/whl/cpu) is out of reach, a folder of
# torch CPU wheels stands in for it (CPU_WHEELS, default: the folders of pip's find-links): the
# index lines of the copies installed name that folder instead, and the build environment of
# sam2's source build is held to the CPU wheel there (PIP_BUILD_CONSTRAINT), since the folder
# lacks the newest +cpu build the real index would give it. The figures then say so.
#
# Environment: PYTHON (default python3.11), WORK (default a new folder under /tmp),
# KEEP=1 keeps the environment afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
CPU_INDEX=https://download.pytorch.org/whl/cpu
PY="${PYTHON:-python3.11}"
REV="${1:-}"
WORK="${WORK:-$(mktemp -d /tmp/space-install.XXXXXX)}"
mkdir -p "$WORK/files"

for name in pre-requirements.txt requirements.txt; do
  if [[ -n $REV ]]; then
    git show "$REV:$name" >"$WORK/files/$name" 2>/dev/null || rm -f "$WORK/files/$name"
  elif [[ -f $name ]]; then
    cp "$name" "$WORK/files/$name"
  fi
done

standin=""
if grep -qsF -- "$CPU_INDEX" "$WORK"/files/*.txt \
  && ! curl -fsI --max-time 10 "$CPU_INDEX/torch/" >/dev/null 2>&1; then
  folders="${CPU_WHEELS:-$(python3 -m pip config get global.find-links 2>/dev/null || true)}"
  mkdir -p "$WORK/cpu-index"
  for folder in $folders ${PIP_FIND_LINKS:-}; do
    find "$folder" -maxdepth 1 -name 'torch-*+cpu-*.whl' -exec ln -sf {} "$WORK/cpu-index/" \;
  done
  wheel=$(find "$WORK/cpu-index" -name 'torch-*+cpu-*.whl' | sort | tail -n 1)
  if [[ -z $wheel ]]; then
    echo "PyTorch's CPU index is out of reach and no torch +cpu wheel stands in for it" >&2
    exit 1
  fi
  version=$(basename "$wheel" | cut -d- -f2)
  sed -i "s#^--extra-index-url $CPU_INDEX\$#--find-links $WORK/cpu-index#" "$WORK"/files/*.txt
  echo "torch==$version" >"$WORK/build-constraints.txt"
  standin="$(basename "$wheel") in a local folder stands in for $CPU_INDEX"
fi

"$PY" -m venv "$WORK/venv"
# pip's own defaults, as on a Space: no configuration files, no extra wheel folders.
run_pip() {
  env -u PIP_FIND_LINKS -u PIP_CONSTRAINT PIP_CONFIG_FILE=/dev/null \
    "$WORK/venv/bin/python" -m pip --disable-pip-version-check "$@"
}
run_pip install -q --no-cache-dir -U pip
log="$WORK/pip.log"
: >"$log"
start=$(date +%s.%N)
for name in pre-requirements.txt requirements.txt; do
  [[ -f $WORK/files/$name ]] || continue
  if [[ -n $standin ]]; then
    PIP_BUILD_CONSTRAINT="$WORK/build-constraints.txt" \
      run_pip install -v --no-cache-dir -r "$WORK/files/$name" >>"$log" 2>&1
  else
    run_pip install -v --no-cache-dir -r "$WORK/files/$name" >>"$log" 2>&1
  fi
done
end=$(date +%s.%N)

echo "files:        ${REV:-working tree}: $(cd "$WORK/files" && ls | tr '\n' ' ')"
[[ -n $standin ]] && echo "CPU index:    $standin"
echo "machine:      $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores;" \
  "$("$WORK/venv/bin/python" -m pip --version | cut -d' ' -f1-2); $("$WORK/venv/bin/python" -V)"
echo "time:         $(python3 -c "print(round($end - $start))") s"
echo "venv size:    $(du -sm "$WORK/venv" | cut -f1) MB"
echo "torch:        $("$WORK/venv/bin/python" -c 'import torch; print(torch.__version__)')"
site=$("$WORK/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
echo "nvidia-*:     $("$WORK/venv/bin/python" -m pip list 2>/dev/null | grep -c '^nvidia-') packages," \
  "$(if [[ -d $site/nvidia ]]; then du -sm "$site/nvidia" | cut -f1; else echo 0; fi) MB; torch itself $(du -sm "$site/torch" | cut -f1) MB"
echo "torch fetched (app and sam2's build environment):"
grep -oE '(Downloading|Processing) [^ ]*torch-[0-9][^ ]*\.whl( \([0-9.]+ [kMG]B\))?' "$log" \
  | sed -E 's#^(Downloading|Processing) (.*/)?#  #' | sort | uniq -c
echo "downloaded:   $(python3 - "$log" <<'SUM'
import re, sys
unit = {"kB": 1e-3, "MB": 1.0, "GB": 1e3}
sizes = re.findall(r"Downloading \S+ \(([\d.]+) (kB|MB|GB)\)", open(sys.argv[1]).read())
print(round(sum(float(n) * unit[u] for n, u in sizes)), "MB in", len(sizes), "files")
SUM
)"
echo "isolated builds: $(grep -c 'Installing build dependencies' "$log") (sam2 and other source distributions)"
echo "log:          $log"
if [[ ${KEEP:-0} != 1 ]]; then
  rm -rf "$WORK/venv"
fi
