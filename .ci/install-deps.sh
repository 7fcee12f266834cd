#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks for the full PoolKernels suite:
#   - OpenCL: PoCL 6.0 built from Debian 13's source package (Debian 12's PoCL 3.1 is OpenCL C 1.2,
#     which ILGPU rejects), plus the ICD loader with the unversioned libOpenCL.so ILGPU dlopens.
#   - ptxas (CUDA 11.8) extracted from Debian's non-free nvidia-cuda-toolkit package, to assemble
#     the PTX that ILGPU generates for sm_80 / sm_90 (no GPU needed).
#   - QEMU user mode and the arm64 C/C++ runtimes, to run the linux-arm64 build of the CLI (the ARM64 leg,
#     `dotnet cake --target=Arm64`); on an ARM64 machine the leg runs natively and these are not needed.
# Everything built or downloaded is cached under $PK_CACHE (default /var/cache/poolkernels), outside
# the checkout, so later runs reuse it. Prints the environment to export on its last lines.
set -euo pipefail
CACHE=${PK_CACHE:-/var/cache/poolkernels}
mkdir -p "$CACHE"
log() { echo "[install-deps] $*" >&2; }

APT_UPDATED=0
apt_update() { if [ $APT_UPDATED = 0 ]; then apt-get update -qq >&2; APT_UPDATED=1; fi; }
need_pkgs() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    apt_update
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  fi
}

# ---- OpenCL runtime: ICD loader + PoCL 6 ------------------------------------------------------
need_pkgs ocl-icd-libopencl1 ocl-icd-opencl-dev ocl-icd-dev clinfo libhwloc15 libllvm15 libclang-cpp15 libclang1-15 clang-15
POCL_PREFIX="$CACHE/pocl-6.0"
if [ ! -f "$POCL_PREFIX/.done" ]; then
  need_pkgs llvm-15-dev libclang-15-dev libclang-cpp15-dev libhwloc-dev cmake ninja-build pkg-config g++ dpkg-dev
  if [ ! -f /etc/apt/sources.list.d/poolkernels-trixie-src.sources ]; then
    cat > /etc/apt/sources.list.d/poolkernels-trixie-src.sources <<SRC
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    APT_UPDATED=0
  fi
  apt_update
  SRC_DIR="$CACHE/pocl-src"
  rm -rf "$SRC_DIR"; mkdir -p "$SRC_DIR"
  ( cd "$SRC_DIR" && apt-get source --download-only pocl=6.0-6 >&2 )
  tar -xf "$SRC_DIR"/pocl_6.0.orig.tar.* -C "$SRC_DIR"
  POCL_SRC=$(find "$SRC_DIR" -mindepth 1 -maxdepth 1 -type d -name 'pocl-6*' | head -n1)
  log "building PoCL 6.0 from $POCL_SRC (a few minutes)"
  cd "$SRC_DIR"
  # LLVM 15 does not know newer CPUs (an AMD EPYC here reads "Host CPU: (unknown)" and PoCL's configure stops):
  # then name the x86-64 feature level the CPU has instead (PoCL takes that or its "distro" variants, not both).
  llc_cpu=(-DKERNELLIB_HOST_CPU_VARIANTS=distro)
  if llc-15 --version | grep -q 'Host CPU: (unknown)'; then
    if grep -qw avx512f /proc/cpuinfo; then llc_cpu=(-DLLC_HOST_CPU=x86-64-v4)
    elif grep -qw avx2 /proc/cpuinfo; then llc_cpu=(-DLLC_HOST_CPU=x86-64-v3)
    else llc_cpu=(-DLLC_HOST_CPU=x86-64-v2); fi
    log "LLVM does not recognize this CPU: ${llc_cpu[*]}"
  fi
  cmake -S "$POCL_SRC" -B "$SRC_DIR/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_INSTALL_PREFIX="$POCL_PREFIX" -DWITH_LLVM_CONFIG="$(command -v llvm-config-15)" \
    -DENABLE_ICD=ON -DENABLE_TESTS=OFF -DENABLE_EXAMPLES=OFF -DENABLE_SPIRV=OFF -DENABLE_LEVEL0=OFF \
    -DENABLE_HOST_CPU_DEVICES=ON -DENABLE_POCL_BUILDING=ON "${llc_cpu[@]}" >&2
  cmake --build "$SRC_DIR/build" >&2
  cmake --install "$SRC_DIR/build" >&2
  cd /
  rm -rf "$SRC_DIR"
  touch "$POCL_PREFIX/.done"
fi

# ---- ptxas from nvidia-cuda-toolkit (non-free) -------------------------------------------------
CUDA_DIR="$CACHE/cuda-toolkit"
if [ ! -x "$CUDA_DIR/usr/bin/ptxas" ]; then
  if [ ! -f /etc/apt/sources.list.d/poolkernels-nonfree.sources ]; then
    cat > /etc/apt/sources.list.d/poolkernels-nonfree.sources <<SRC
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: contrib non-free
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    APT_UPDATED=0
  fi
  apt_update
  tmp=$(mktemp -d)
  ( cd "$tmp" && apt-get download nvidia-cuda-toolkit >&2 )
  rm -rf "$CUDA_DIR"; mkdir -p "$CUDA_DIR"
  dpkg-deb -x "$tmp"/nvidia-cuda-toolkit_*.deb "$CUDA_DIR"
  rm -rf "$tmp"
fi

# ---- ARM64 under QEMU user emulation (dpkg -s per package: nothing is fetched when all are present) ----------------
if [ "$(uname -m)" != "aarch64" ]; then
  need_pkgs qemu-user-static libc6-arm64-cross libstdc++6-arm64-cross libgcc-s1-arm64-cross
fi

echo "export OCL_ICD_VENDORS=$POCL_PREFIX/etc/OpenCL/vendors"
echo "export POOLKERNELS_PTXAS=$CUDA_DIR/usr/bin/ptxas"
