#!/usr/bin/env bash
# Refreshes the repository's copy of the conformance vectors (tests/vectors) from ../shared/vectors, the upstream
# PyTorch-made set, when that folder exists beside the checkout (or from $1). The tests only ever read tests/vectors,
# so a clone needs nothing outside itself. Vectors are never edited by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:-../shared/vectors}
[ -d "$src" ] || { echo "no $src: nothing to refresh (tests use tests/vectors as committed)"; exit 0; }
rm -rf tests/vectors
mkdir -p tests/vectors
cp -r "$src"/. tests/vectors/
echo "tests/vectors refreshed from $src: $(find tests/vectors -name '*.safetensors' | wc -l) vectors"
