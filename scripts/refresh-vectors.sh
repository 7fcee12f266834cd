#!/usr/bin/env bash
# Refreshes the repository's copy of the conformance vectors (tests/vectors) from ../shared/vectors, the upstream
# PyTorch-made set, when that folder exists beside the checkout (or from $1). The tests only ever read tests/vectors,
# so a clone needs nothing outside itself. Vectors are never edited by hand.
#
# Features that have landed also keep their vectors from ../shared/vectors-next (or $2): every folder (operation) named
# in LANDED below is copied from there after the main set, merging into a folder of the same name (e.g. the typed-db
# similarity_topk vectors join the F32 ones). Add an operation here when its vectors-next folder joins the conformance set.
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:-../shared/vectors}
next=${2:-../shared/vectors-next}
LANDED=(quantize hamming_topk binary_search similarity_topk sdpa sdpa_varlen sdpa_paged kv_cache_write attention_combine info_nce adamw_step
  sequence_pool spatial_pool sequence_pool_backward spatial_pool_backward sdpa_backward sdpa_varlen_backward
  latent_attention_pool_backward multi_layer_pool_backward)
[ -d "$src" ] || { echo "no $src: nothing to refresh (tests use tests/vectors as committed)"; exit 0; }
rm -rf tests/vectors
mkdir -p tests/vectors
cp -r "$src"/. tests/vectors/
if [ -d "$next" ]; then
  for op in "${LANDED[@]}"; do
    [ -d "$next/$op" ] || { echo "warning: $next/$op missing; its vectors were not kept" >&2; continue; }
    mkdir -p "tests/vectors/$op"
    cp -r "$next/$op"/. "tests/vectors/$op/"
  done
else
  echo "warning: no $next: the vectors of landed vectors-next features (${LANDED[*]}) are gone from tests/vectors" >&2
fi
echo "tests/vectors refreshed from $src (+ landed: ${LANDED[*]}): $(find tests/vectors -name '*.safetensors' | wc -l) vectors"
