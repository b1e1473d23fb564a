#!/usr/bin/env bash
# Every GPU figure of the full-size issue in one prepared command, on a machine with CUDA,
# from the project root (prepare with bench/gpu_prep.sh; carry .devwheels and .devdata):
#
#   source .devwheels/setup.sh && bash bench/gpu_run.sh
#
# SMOKE=1 runs the same scripts on a CPU at toy sizes (figures meaningless): a check that
# they run, before a GPU's minutes are spent. Writes each bench's output to $OUT (default
# bench/gpu_out/) and to the terminal.
set -u
out="${OUT:-bench/gpu_out}"
py="${PYTHON:-python3}"
mkdir -p "$out"
data=()
[ -d .devdata/hippocampus ] && data=(--data .devdata/hippocampus)
status=0
run() {  # name, command...
    local name=$1
    shift
    echo "== $name: $*"
    "$@" 2>&1 | tee "$out/$name.txt"
    [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "== $name FAILED"; status=1; }
}
if [ "${SMOKE:-0}" = 1 ]; then
    run inference "$py" bench/gpu_bench.py --device cpu --slices 4 --crop 64 --repeats 1 --skip-real
    run fine_tune "$py" bench/train_prefetch_bench.py --device cpu --threads 1 --cases 4 --steps 3 --batches 4 "${data[@]}"
    run resampling "$py" bench/resample_bench.py --device cpu --model tiny --shape 24 64 64 --region 4 20 8 40 8 40 --repeats 1 --skip-real
else
    run inference "$py" bench/gpu_bench.py --repeats 3 "${data[@]}"
    run fine_tune "$py" bench/train_prefetch_bench.py --device cuda --threads 8 --cases 40 --steps 200 --batches 8 16 32 "${data[@]}"
    run resampling "$py" bench/resample_bench.py --device cuda --skip-real
fi
exit $status
