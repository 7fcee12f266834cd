#!/usr/bin/env bash
# The prepared device check for a lent GPU machine (see CONTRIBUTING.md "Running on a lent GPU"): scripts/package-gpu.sh
# copies it into .device/, then `run` with carry [".device"] executes `bash .device/gpu.sh`. Unpacks the tool, then
# verify and check the vectors on cuda:0, and bench (the ops in $NEW, or all when NEW=all) on cuda:0 and on the host's
# simd; every result lands under $OUT. About 4 minutes of device time.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"; [ -d poolkernels ] || tar -xJf pk.tar.xz
run() { local name=$1 t=$2; shift 2; echo "== $name"; timeout "$t" ./run.sh "$@" > "$OUT/$name.txt" 2>&1; echo "rc=$?" >> "$OUT/$name.txt"; tail -4 "$OUT/$name.txt"; }
run verify 120 verify --device cuda:0
run check 60 check ../tests/vectors --device cuda:0
NEW=${NEW:-sdpa_paged,kv_cache_write,attention_combine,quantize,hamming_topk,binary_search,similarity_topk,info_nce,adamw_step,sdpa}
ops=(--op "$NEW"); [ "$NEW" = all ] && ops=()
run bench-cuda 120 bench --device cuda:0 --json --repeat 5 "${ops[@]}"
run bench-simd 120 bench --device simd --json --repeat 5 "${ops[@]}"
ls "$OUT"
