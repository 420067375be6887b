#!/usr/bin/env bash
# Download, on this machine, the wheels the GPU device machine lacks into .whl/ (git-ignored), so
# they can be carried there (run tool: carry [".whl"]). scripts/gpu_check.sh installs them with
# pip --no-index into /tmp/site.
#
# The device has Python 3.12 with CuPy, numpy, scipy, scikit-image, tifffile, pyyaml, typer, rich
# and pytest. The GPU tests and the benchmark need nothing else; these wheels make the rest of the
# package importable there too (the `rig` CLI, configs, ROI files). Versions follow .venv here.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
PKGS=(pydantic pydantic-core annotated-types typing-inspection typing-extensions psygnal pyserial roifile)
SPECS=()
for p in "${PKGS[@]}"; do
  v=$("$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$p" 2>/dev/null || true)
  SPECS+=("${p}${v:+==$v}")
done
mkdir -p .whl
"$PY" -m pip download -q --no-deps --only-binary=:all: \
  --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform any \
  -d .whl "${SPECS[@]}"
echo "wheels in .whl/ ($(du -sh .whl | cut -f1)):"
ls -1 .whl
