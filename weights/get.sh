#!/usr/bin/env bash
# Downloads one official EfficientTAM, SAM 2 or SAM 2.1 checkpoint and converts it to safetensors
# (F16 by default).
#
#   weights/get.sh efficienttam_ti_512x512            -> weights/efficienttam_ti_512x512.safetensors (F16)
#   weights/get.sh sam2.1_hiera_tiny                  -> weights/sam2.1_hiera_tiny.safetensors (F16)
#   weights/get.sh efficienttam_s --f32               -> weights/efficienttam_s.safetensors (F32)
#   OUT_DIR=/data weights/get.sh efficienttam_ti_1
#
# Needs curl and Node >= 20 (run from the repository root, after `npm install`).
set -euo pipefail

ETAM_VARIANTS="efficienttam_ti efficienttam_ti_1 efficienttam_ti_2 efficienttam_ti_512x512 efficienttam_s efficienttam_s_1 efficienttam_s_2 efficienttam_s_512x512"
SAM2_VARIANTS="sam2_hiera_tiny sam2_hiera_small sam2_hiera_base_plus sam2_hiera_large"
SAM21_VARIANTS="sam2.1_hiera_tiny sam2.1_hiera_small sam2.1_hiera_base_plus sam2.1_hiera_large"
VARIANTS="$ETAM_VARIANTS $SAM2_VARIANTS $SAM21_VARIANTS"

name="${1:-}"
if [[ -z "$name" || " $VARIANTS " != *" $name "* ]]; then
  echo "usage: $0 <variant> [--f32]" >&2
  echo "variants: $VARIANTS" >&2
  exit 2
fi
# where each family is published (facebookresearch/sam2's README and checkpoints/download_ckpts.sh)
if [[ " $SAM21_VARIANTS " == *" $name "* ]]; then
  BASE_URL="${BASE_URL:-https://dl.fbaipublicfiles.com/segment_anything_2/092824}"
elif [[ " $SAM2_VARIANTS " == *" $name "* ]]; then
  BASE_URL="${BASE_URL:-https://dl.fbaipublicfiles.com/segment_anything_2/072824}"
else
  BASE_URL="${BASE_URL:-https://huggingface.co/yunyangx/efficient-track-anything/resolve/main}"
fi
precision="--f16"
if [[ "${2:-}" == "--f32" ]]; then precision=""; fi

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
out_dir="${OUT_DIR:-$here}"
mkdir -p "$out_dir"
pt="$out_dir/$name.pt"
out="$out_dir/$name.safetensors"

if [[ ! -s "$pt" ]]; then
  echo "downloading $BASE_URL/$name.pt"
  # -f: fail on HTTP errors; -L: follow the redirect to the CDN; -C -: resume a partial download
  curl -fL --retry 3 -C - -o "$pt.part" "$BASE_URL/$name.pt"
  mv "$pt.part" "$pt"
fi

echo "converting $pt -> $out ${precision:+(F16)}"
cd "$root"
node "$root/bin/etam.js" convert "$pt" "$out" $precision
echo "done: $out"
echo "(the .pt is kept at $pt; delete it if you do not need it)"
