#!/usr/bin/env bash
# On the GPU machine: install a folder made by tools/device_carry.sh into /tmp/site, in the order they arrive.
#   bash tools/device_setup.sh .carry0   # wheels and the front-end; the first libraries part waits in /tmp
#   bash tools/device_setup.sh .carry1   # joins both parts and unpacks the TensorRT-RTX libraries
# Then: export PYTHONPATH=/tmp/site:$PWD
set -euo pipefail
folder=${1:?usage: device_setup.sh .carry0|.carry1}
site=/tmp/site
mkdir -p "$site"
if [ -f "$folder/libs.part00" ]; then
    python3 -m pip install --quiet --no-index --no-deps --target "$site" "$folder"/*.whl
    cp -r "$folder"/py/* "$site"/
    cp "$folder/libs.part00" /tmp/
fi
if [ -f "$folder/libs.part01" ]; then
    [ -f /tmp/libs.part00 ] || { echo "device_setup: install .carry0 first (the first libraries part is missing)"; exit 2; }
    cat /tmp/libs.part00 "$folder/libs.part01" | xz -dc -T0 | tar -C "$site" -xf -
    rm /tmp/libs.part00
    PYTHONPATH=$site python3 -c 'import tensorrt_rtx as t; print("TensorRT-RTX", t.__version__, "ready in /tmp/site")'
fi
