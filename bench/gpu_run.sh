#!/usr/bin/env bash
# Every GPU figure of the full-size issue in one prepared command, on a machine with CUDA,
# from the project root (packages the GPU machine lacks: ../shared/tools/device_prep.sh):
#
#   source .devwheels/setup.sh && bash bench/gpu_run.sh
#
# Writes each bench's output to $OUT (default bench/gpu_out/) and to the terminal.
set -u
out="${OUT:-bench/gpu_out}"
mkdir -p "$out"
run() {  # name, command...
    local name=$1
    shift
    echo "== $name: $*"
    "$@" 2>&1 | tee "$out/$name.txt"
}
run inference python3 bench/gpu_bench.py --repeats 3
run fine_tune python3 bench/train_prefetch_bench.py --device cuda --threads 8 --cases 40 --steps 200
run resampling python3 bench/resample_bench.py --device cuda --skip-real
