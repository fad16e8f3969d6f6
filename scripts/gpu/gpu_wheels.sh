#!/usr/bin/env bash
# Download into .whl/ the wheels a bare GPU machine (PyTorch, Triton, Lightning preinstalled,
# no network) needs to run scripts/gpu/gpu_check.sh: CPython 3.12, manylinux x86-64, no torch.
#
#   bash scripts/gpu/gpu_wheels.sh          # on a machine that reaches the package registry
#
# PINNED wheels are installed by gpu_check.sh whenever the machine has another version (e.g. a
# transformers 5.x that dropped the Mega port); IF_MISSING wheels only where the package is absent.
set -uo pipefail

cd "$(dirname "$0")/../.." || exit 1
PY=${PYTHON:-python3}
DEST=.whl
LIMIT_MIB=60

PINNED=(
  hydra-core==1.3.8
  omegaconf==2.3.1
  transformers==4.46.3      # the last release with models/deprecated/mega
  tokenizers==0.20.3        # transformers 4.46.3: >=0.20,<0.21
  huggingface-hub==0.36.2   # transformers 4.46.3: <1.0
  mega-pytorch==0.1.0
)
IF_MISSING=(
  einops==0.8.2             # mega-pytorch
  safetensors==0.8.0 regex==2026.5.9 requests==2.34.2 urllib3==2.7.0 idna==3.20
  certifi==2026.5.20 charset-normalizer==3.4.7 pyyaml==6.0.3
  rich==15.0.0 markdown-it-py==4.3.0 mdurl==0.1.2 pygments==2.20.0
  pytest==9.0.3 pluggy==1.6.0 iniconfig==2.3.0
)
# omegaconf pins antlr 4.9.*, which PyPI has only as a source archive: build its pure-Python wheel.
SDIST_ONLY=(antlr4-python3-runtime==4.9.3)

# every version listed once: two wheels of one package would stop the install there
rm -rf "$DEST" && mkdir -p "$DEST" || exit 1

echo "gpu_wheels: downloading ${#PINNED[@]} pinned + ${#IF_MISSING[@]} fallback wheels (cp312, manylinux x86-64)"
if ! "$PY" -m pip download --quiet --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$DEST" "${PINNED[@]}" "${IF_MISSING[@]}"; then
  echo "gpu_wheels: error: pip download failed (is the package registry reachable?)" >&2
  exit 1
fi
echo "gpu_wheels: building ${SDIST_ONLY[*]} (source only on the registry)"
if ! "$PY" -m pip wheel --quiet --no-deps -w "$DEST" "${SDIST_ONLY[@]}"; then
  echo "gpu_wheels: error: could not build ${SDIST_ONLY[*]}" >&2
  exit 1
fi

# the split gpu_check.sh reads: pinned distributions, normalised as in wheel file names
printf '%s\n' "${PINNED[@]}" "${SDIST_ONLY[@]}" | sed 's/==.*//; s/-/_/g' > "$DEST/PINNED"

wheels=("$DEST"/*.whl)
count=${#wheels[@]}
bytes=$(du -cb "${wheels[@]}" | tail -1 | cut -f1)
mib=$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1048576 }')
echo "gpu_wheels: $count wheels, $mib MiB in total, in $DEST/"
if (( bytes > LIMIT_MIB * 1048576 )); then
  echo "gpu_wheels: error: $mib MiB is over the $LIMIT_MIB MiB limit" >&2
  exit 1
fi
