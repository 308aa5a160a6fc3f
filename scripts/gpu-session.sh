#!/usr/bin/env bash
# Every GPU check of issue 4 in two calls that each fit a lent device's 10-minute command limit,
# for a session whose device time is short (15 minutes in all, start-up included):
#
#   bash scripts/gpu-session.sh check   # build for sm_90, test:gpu (all cases, every lora_moe
#                                       # path forced on), compute-sanitizer memcheck and
#                                       # racecheck over test:gpu --quick         (~5-8 min)
#   bash scripts/gpu-session.sh bench   # pf_bench_gpu (all shapes, the three lora_moe paths),
#                                       # the PyTorch reference and the comparison  (~4-7 min)
#
# Logs and JSON go to $OUT (the device tool's folder that comes back) or ./gpu-session. Needs
# cmake, nvcc and, for the reference, python3 with CUDA torch; not Node (the device image may
# lack it: the comparison falls back to the reference's own lines). Each step has its own
# timeout so a hang costs that step, not the call; the last lines printed are the summary.
set -uo pipefail
cd "$(dirname "$0")/.."
stage=${1:-check}
out=${OUT:-gpu-session}
build=build-kernels/gpu
mkdir -p "$out"
summary=()
step() {  # step NAME SECONDS CMD...: runs CMD under a timeout, logs to $out/NAME.log
  local name=$1 secs=$2
  shift 2
  local t0=$SECONDS
  timeout "$secs" "$@" >"$out/$name.log" 2>&1
  local rc=$?
  summary+=("$(printf '%-10s rc %-3s %4ss  %s' "$name" "$rc" "$((SECONDS - t0))" "$(tail -n 1 "$out/$name.log")")")
  return $rc
}

nvidia-smi --query-gpu=name,compute_cap,driver_version,clocks.sm,clocks.mem --format=csv >"$out/nvidia-smi.csv" 2>&1

if [ ! -x "$build/pf_test_gpu" ] || [ "$stage" = check ]; then
  step build 300 bash -c "cmake -S kernels -B $build -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_COMPILER=\$(command -v nvcc) \
    -DPF_CUDA_ARCHS=90 -DPF_REQUIRE_CUDA=ON && cmake --build $build --parallel \$(nproc)" || {
    printf '%s\n' "${summary[@]}"
    exit 1
  }
fi

case "$stage" in
  check)
    step test_gpu 240 "$build/pf_test_gpu"
    grep -c '^PASS' "$out/test_gpu.log" | sed 's/^/test_gpu PASS lines: /' >>"$out/test_gpu.log"
    step memcheck 150 compute-sanitizer --tool memcheck --error-exitcode 3 "$build/pf_test_gpu" --quick
    step racecheck 150 compute-sanitizer --tool racecheck --error-exitcode 3 "$build/pf_test_gpu" --quick
    grep '^FAIL' "$out/test_gpu.log" | head -20
    ;;
  bench)
    step bench_gpu 330 "$build/pf_bench_gpu" --out "$out"
    ours=$(ls -t "$out"/gpu-*.json 2>/dev/null | grep -v -- '-torch\.json$' | head -n 1)
    if [ -n "$ours" ] && python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 3)' 2>/dev/null; then
      step torch 200 python3 kernels/bench/torch_lora_moe.py --ours "$ours"
      if command -v node >/dev/null; then
        node scripts/gpu-compare.js "$ours" "${ours%.json}-torch.json" | tail -n 40
      else
        grep 'lora_moe_torch' "$out/torch.log" | tail -n 40
      fi
    fi
    grep -E '^lora_moe .*(T=1 |T=16 |T=64 |T=4096)' "$out/bench_gpu.log" | head -n 48
    grep -E '^topk_softmax .*E=64 .*T=4096' "$out/bench_gpu.log"
    ;;
  *)
    echo "usage: scripts/gpu-session.sh check|bench" >&2
    exit 2
    ;;
esac
printf '%s\n' "${summary[@]}"
