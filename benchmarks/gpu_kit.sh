#!/usr/bin/env bash
# Pack what an offline GPU machine lacks into .gpu/ (git-ignored), for benchmarks/gpu_check.sh.
#
#   bash benchmarks/gpu_kit.sh            # here, once: about 36 MB
#
# For a GPU machine that has PyTorch, OpenCV, scikit-image, pandas and matplotlib, but no
# albumentations and no way to download: its wheels (Python 3.12, x86-64) and the competition's
# train/test zips travel in .gpu/. Versions are the ones this project is tested with.
set -euo pipefail
cd "$(dirname "$0")/.."
ZIP=${ZIP:-../shared/competition/denoising-dirty-documents.zip}
KIT=.gpu
PY=${PY:-.venv/bin/python}
WHEELS=(albumentations==2.0.8 albucore==0.0.24 pydantic==2.14.4 pydantic-core==2.50.5
        annotated-types==0.8.0 typing-inspection==0.4.5 typing-extensions==4.16.0
        simsimd==6.5.16 stringzilla==5.3.2)

[ -f "$ZIP" ] || { echo "gpu_kit: $ZIP not found; set ZIP=path/to/denoising-dirty-documents.zip" >&2; exit 1; }
mkdir -p "$KIT/data" "$KIT/whl"
# A dry run of gpu_check.sh extracts the zips here (22+ MB more): drop them, so .gpu/ stays small to copy.
rm -rf "$KIT/data/train" "$KIT/data/train_cleaned" "$KIT/data/test"
# train + train_cleaned for the full recipe, test for a submission's timing; not the 29 MB sample CSV.
unzip -o -q -j "$ZIP" train.zip train_cleaned.zip test.zip -d "$KIT/data"
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
         manylinux2014_x86_64 manylinux1_x86_64; do platforms+=(--platform "$p"); done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d "$KIT/whl" "${WHEELS[@]}"
du -sh "$KIT"
echo "gpu_kit: ready; copy the project with .gpu/ to the GPU machine and run: bash benchmarks/gpu_check.sh"
