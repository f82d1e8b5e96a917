#!/usr/bin/env bash
# The serving lab on an NVIDIA GPU, end to end, in under 8 minutes: engine figures, then the reference graded on
# the `gpu` profile with the naive server as the floor, then the key figures. Leaves nothing running.
#
#   benchmarks/gpu_check.sh [OUT]          # OUT defaults to $OUT, else out/gpu
#
# Needs: python3 with torch (CUDA), transformers, numpy, httpx, matplotlib, nvidia-ml-py (as on a CUDA image).
# A machine without a package registry gets the rest as wheels in .whl/. On a machine with pip, for the GPU
# machine's Python (3.12 here):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 -d .whl fastapi starlette pydantic pydantic-core annotated-types \
#       annotated-doc typing-inspection uvicorn sniffio opentelemetry-api opentelemetry-sdk \
#       opentelemetry-semantic-conventions openai httpx2 httpcore2 truststore jiter distro
# (pin the versions of your .venv: `.venv/bin/pip freeze`). They are installed into python3's own site-packages,
# with a .pth line that puts this checkout on its path: use a throwaway machine or a venv of your own.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${1:-${OUT:-out/gpu}}
mkdir -p "$OUT_DIR"
trap 'pkill -P $$ 2>/dev/null || true' EXIT
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
PY=${PY:-python3}
started=$(date +%s)

nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit --format=csv,noheader
if ! $PY -c "import fastapi, uvicorn, opentelemetry.sdk, openai" 2>/dev/null; then
  ls .whl/*.whl >/dev/null 2>&1 || { echo "missing fastapi/uvicorn/opentelemetry/openai and no .whl/ folder: see the header" >&2; exit 2; }
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir .whl/*.whl
fi
site=$($PY -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
[ -f "$site/ailab-checkout.pth" ] || echo "$PWD" > "$site/ailab-checkout.pth"

# The sandbox runs each submission as a fresh user id inside its own namespaces; where that user cannot open the
# GPU or the namespaces are refused, say so and run as the grader's user / with the network open.
extra=()
if [ "$(id -u)" = 0 ] && ! setpriv --reuid 65534 --regid 65534 --clear-groups $PY -c \
    "import torch; torch.zeros(1, device='cuda')" >/dev/null 2>&1; then
  echo "note: an unprivileged user cannot use the GPU here; submissions run as the grader's user"
  export AILAB_SANDBOX_USER=same
fi
if [ "$(id -u)" = 0 ] && ! unshare --net true 2>/dev/null; then
  echo "note: no network namespace here; grading with --allow-network"
  extra+=(--allow-network)
fi

$PY -m reference_systems.serving.model gpt2-small
timeout 90 $PY -m benchmarks.gpu_engine --invariance "${INVARIANCE-bfloat16,float32}" --out "$OUT_DIR/engine.json" 2>&1 | grep -v "Loading weights"
timeout 270 $PY -m graders.cli grade serving reference --profile gpu --out "$OUT_DIR/grade" "${extra[@]}" \
  > "$OUT_DIR/grade.log" 2>&1 || { tail -40 "$OUT_DIR/grade.log"; exit 1; }
$PY -m benchmarks.gpu_summary "$OUT_DIR/grade"
echo "gpu_check: $(( $(date +%s) - started )) s; report: $OUT_DIR/grade/reference/report.html"
