#!/bin/bash
# Prepares the GPU check (`pagoda-bench gpu-check`) for a lent GPU machine, which has no internet and no Node.js.
#
#   bash tooling/gpu/prepare-check.sh [shared-gpu-dir]     (default ../shared/gpu beside the checkout)
#
# It builds, all in ignored folders of this checkout:
#   .gpu-check/bundle    the check bundled with every dependency but ONNX Runtime (apps/bench/tsup.gpu-check.config.ts)
#   .gpu-cuda-1 … N      Node.js 20, onnxruntime-node 1.29 and its CUDA 13 provider, cut into chunks by the shared
#                        prepare-cuda.sh, plus the bundle and the fixture models spread over the chunks
#   .gpu-check/CALLS.md  the device calls, in order, each with what it carries
#
# Every call carries the checkout's tracked files too, and 64 MB is the most one call may carry: the oracle fixtures
# are ~52 MB of them. `bash tooling/gpu/slim-tree.sh on` takes them out of the index for the device calls (they then
# travel in the chunks instead); `bash tooling/gpu/slim-tree.sh off` puts them back. Never commit in between.
set -euo pipefail
root=$(git rev-parse --show-toplevel); cd "$root"
shared=${1:-$root/../shared/gpu}
[ -f "$shared/prepare-cuda.sh" ] || { echo "no prepare-cuda.sh in $shared: pass the folder holding the shared GPU carry scripts" >&2; exit 1; }

(cd apps/bench && npx tsup --config tsup.gpu-check.config.ts >/dev/null)
echo '{ "type": "module" }' > .gpu-check/bundle/package.json

# Chunks of 36 MB leave room beside the slimmed checkout for one fixture model per call.
bash "$shared/prepare-cuda.sh" 36 >/dev/null
n=$(ls -d .gpu-cuda-* | wc -l)

# Each fixture model goes into the emptiest folder it fits beside (budget: 64 MB less the slimmed checkout's tracked
# files, with a margin); the bundle rides with the last call.
mkdir -p ".gpu-cuda-$n/check" ".gpu-cuda-$n/debs"
cp -r .gpu-check/bundle/. ".gpu-cuda-$n/check/"
# WebGPU (Dawn over Vulkan, bundled in onnxruntime-node) needs the Vulkan loader, which the machine lacks.
mkdir -p /tmp/amd64/partial
apt_options='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
apt-get $apt_options update >/dev/null 2>&1 || true
( cd ".gpu-cuda-$n/debs" && apt-get $apt_options download libvulkan1 >/dev/null 2>&1 ) || echo "libvulkan1 not downloaded: the WebGPU run will fail" >&2
budget=$(( 58 * 1024 * 1024 ))
for model in $(du -sbL tooling/fixtures/data/tiny-* | sort -rn | cut -f2 | xargs -n1 basename); do
  need=$(du -sbL "tooling/fixtures/data/$model" | cut -f1)
  best=""; best_size=$budget
  for k in $(seq 1 "$n"); do
    size=$(du -sb ".gpu-cuda-$k" | cut -f1)
    if [ $(( size + need )) -le "$budget" ] && [ "$size" -lt "$best_size" ]; then best=$k; best_size=$size; fi
  done
  [ -n "$best" ] || { echo "no call has room for $model: lower the chunk size" >&2; exit 1; }
  mkdir -p ".gpu-cuda-$best/check/data"
  cp -rL "tooling/fixtures/data/$model" ".gpu-cuda-$best/check/data/"
done

cat > ".gpu-cuda-$n/webgpu.sh" <<'WEBGPU'
# After the CUDA check in the last call: the same correctness checks on WebGPU (no throughput: it is ~2% of the
# memory roofline by the shared notes), with the Vulkan loader and the NVIDIA driver's Vulkan ICD.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
for f in "$here"/debs/*.deb; do dpkg -x "$f" /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
timeout 150 node /tmp/gpu/check/gpu-check.js --device webgpu --skip-perf --out "$OUT/webgpu"
WEBGPU

{
  echo "# Device calls for the GPU check ($(date -u +%Y-%m-%dT%H:%MZ))"
  echo
  echo "First: \`bash tooling/gpu/slim-tree.sh on\` (and \`off\` after the last call). Make every call back to back: the machine"
  echo "is given back 30 s after a call ends. Each line: command | carry."
  echo
  for k in $(seq 1 $((n - 1))); do
    echo "$k. \`mkdir -p /tmp/gpu && cp -r .gpu-cuda-$k/. /tmp/gpu/ && du -sh /tmp/gpu\` | [\".gpu-cuda-$k\"] ($(du -sh ".gpu-cuda-$k" | cut -f1))"
  done
  # The last call's folder holds the runtime's JavaScript and unpack.sh (and maybe a fixture): copy it all first.
  echo "$n. \`mkdir -p /tmp/gpu && cp -r .gpu-cuda-$n/check/. /tmp/gpu/check/ && source .gpu-cuda-$n/unpack.sh && ln -sfn \$NODE_PATH /tmp/gpu/check/node_modules && nvidia-smi && timeout 420 node /tmp/gpu/check/gpu-check.js --device cuda --out \$OUT/cuda; OUT=\$OUT bash .gpu-cuda-$n/webgpu.sh\` | [\".gpu-cuda-$n\"] ($(du -sh ".gpu-cuda-$n" | cut -f1))"
  echo
  echo "Then \`bash tooling/gpu/slim-tree.sh off\`; copy \$OUT/cuda/gpu-notes.md (and webgpu/gpu-notes.md) into apps/bench/GPU-NOTES.md"
  echo "and say what they show in the closing note."
} > .gpu-check/CALLS.md
du -sh .gpu-cuda-* .gpu-check/bundle
cat .gpu-check/CALLS.md
