#!/usr/bin/env bash
# Pack what a GPU machine without internet lacks for the full-size tools into folders small enough to travel
# with one command each (< 64 MiB): .carry0 and .carry1 in the repository root (git-ignored).
#
#   .carry0: TensorRT-RTX bindings (cp312) and its Python front-end, onnx-graphsurgeon, diffusers 0.42.1,
#            and the first half of the TensorRT-RTX libraries (xz -9: 234 MB of .so → about 67 MB, in two parts)
#   .carry1: the second half of the libraries
#
# There, install each folder as it arrives with tools/device_setup.sh (the first part waits in /tmp), then run
# with PYTHONPATH=/tmp/site:$PWD. Needs PyPI access here and the project's .venv (for the front-end package).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON_VERSION=${PYTHON_VERSION:-3.12}  # the GPU machine's Python
TRT_RTX=1.7.1.116
wheels=$(mktemp -d)
trap 'rm -rf "$wheels"' EXIT

python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version "$PYTHON_VERSION" \
    --platform manylinux_2_28_x86_64 -d "$wheels" \
    "tensorrt-rtx-cu13-libs==$TRT_RTX" "tensorrt-rtx-cu13-bindings==$TRT_RTX" \
    "diffusers==0.42.1" "onnx-graphsurgeon==0.6.1" 2> >(grep -v "is ignored: it is neither" >&2)

rm -rf .carry0 .carry1 && mkdir -p .carry0/py .carry1
mv "$wheels"/tensorrt_rtx_cu13_bindings-*.whl "$wheels"/diffusers-*.whl "$wheels"/onnx_graphsurgeon-*.whl .carry0/
# The tensorrt-rtx-cu13 front-end is an sdist that builds nothing platform-specific: take the installed package.
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cp -r "$site/tensorrt_rtx" .carry0/py/
find .carry0/py -name __pycache__ -prune -exec rm -rf {} +

libs=$(mktemp -d)
unzip -q "$wheels"/tensorrt_rtx_cu13_libs-*.whl -d "$libs"
tar -C "$libs" -cf - . | xz "-${XZ_LEVEL:-9}" -T0 > "$libs.tar.xz"
split -n 2 -d "$libs.tar.xz" "$libs.part"
mv "$libs.part00" .carry0/libs.part00
mv "$libs.part01" .carry1/libs.part01
rm -rf "$libs" "$libs.tar.xz"
du -sh .carry0 .carry1
