#!/usr/bin/env bash
# Download (here, where pip reaches the index) the wheels benchmarks/gpu/run.sh installs on the
# device machine, which has no package index: albumentations and its dependencies that the
# machine's image lacks, for CPython 3.12 on x86-64 Linux. The folder .whl/ must be git-ignored
# (`echo /.whl/ >> .git/info/exclude`) and named in the device call's `carry`.
set -euo pipefail
cd "$(dirname "$0")/../.."
DEST=${1:-.whl}
mkdir -p "$DEST"
for spec in albumentations==2.0.8 albucore==0.0.24 pydantic==2.13.4 pydantic-core==2.46.4 \
            annotated-types==0.7.0 typing-inspection==0.4.2 stringzilla==5.3.2 simsimd==6.5.16; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$DEST" "$spec"
done
du -sh "$DEST"
