#!/usr/bin/env bash
# Download the wheels the (offline) lent GPU machine may lack into .whl/ at the repo root, for
# scripts/gpu_check.sh to install with `pip install --no-index`.  Run on a machine that reaches PyPI:
#
#     bash scripts/fetch_gpu_wheels.sh            # Python 3.12, manylinux x86_64 (the GPU machines)
#     PYVER=3.11 bash scripts/fetch_gpu_wheels.sh # another interpreter version
#
# .whl/ is ignored through .git/info/exclude (not .gitignore); pass it to the device run with
# carry: [".whl"].  numpy, cupy and torch are NOT fetched: the GPU machine has them.
set -euo pipefail
cd "$(dirname "$0")/.."
PYVER=${PYVER:-3.12}
DEST=${DEST:-.whl}
mkdir -p "$DEST"

# name==version: the versions this project is tested with (llvmlite is the only binary wheel)
BINARY=("llvmlite==0.50.0")
PURE=("networkx==3.6.1" "hypothesis==6.155.2" "attrs==26.1.0" "sortedcontainers==2.4.0"
      "pytest==9.0.3" "pluggy==1.6.0" "iniconfig==2.3.0" "packaging==26.2" "pygments==2.20.0")

for spec in "${BINARY[@]}"; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$DEST" "$spec"
done
for spec in "${PURE[@]}"; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --platform any \
    -d "$DEST" "$spec"
done

grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
ls -la "$DEST"
du -sh "$DEST"
