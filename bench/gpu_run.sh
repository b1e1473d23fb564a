#!/usr/bin/env bash
# Every GPU figure of the full-size issue in one prepared command, on a machine with CUDA,
# from the project root (prepare with bench/gpu_prep.sh; carry .devwheels and .devdata):
#
#   source .devwheels/setup.sh && bash bench/gpu_run.sh
#
# SMOKE=1 runs the same scripts on a CPU at toy sizes (figures meaningless): a check that
# they run, before a GPU's minutes are spent. Writes each bench's output to $OUT (default
# bench/gpu_out/) and to the terminal. Each script has a time limit (9 min in all, within
# one device call's 10).
set -u
out="${OUT:-bench/gpu_out}"
py="${PYTHON:-python3}"
mkdir -p "$out"
data=()
[ -d .devdata/hippocampus ] && data=(--data .devdata/hippocampus)
status=0
run() {  # name, seconds allowed, command...: one slow script cannot take the others' time
    local name=$1 limit=$2
    shift 2
    echo "== $name (at most ${limit} s): $*"
    timeout "$limit" "$@" 2>&1 | tee "$out/$name.txt"
    [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "== $name FAILED or ran out of time"; status=1; }
}
if [ "${SMOKE:-0}" = 1 ]; then
    run inference 300 "$py" bench/gpu_bench.py --device cpu --slices 4 --crop 64 --repeats 1 --skip-real
    run fine_tune 300 "$py" bench/train_prefetch_bench.py --device cpu --threads 1 --cases 4 --steps 3 --batches 4 "${data[@]}"
    run resampling 300 "$py" bench/resample_bench.py --device cpu --model tiny --shape 24 64 64 --region 4 20 8 40 8 40 --repeats 1 --skip-real
else
    run inference 300 "$py" bench/gpu_bench.py --repeats 3 "${data[@]}"
    run fine_tune 150 "$py" bench/train_prefetch_bench.py --device cuda --threads 8 --cases 40 --steps 200 --batches 8 16 32 "${data[@]}"
    run resampling 90 "$py" bench/resample_bench.py --device cuda --skip-real
fi
exit $status
