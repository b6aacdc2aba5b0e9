#!/usr/bin/env bash
# Build the environment MMSegmentation users keep: torch 2.5 (which mmcv 2.1.0 compiles against and
# mmengine loads checkpoints with), mmcv 2.1.0 with its compiled ops, mmengine, mmsegmentation 1.2.2,
# and umgkit on top. Nothing is written inside the repository.
#
#   tools/mmseg_env.sh ENV_DIR            # e.g. tools/mmseg_env.sh ~/envs/umgkit-mmseg
#
# Measured on 2 cores (torch 2.5.1 from PyPI, its CUDA 12.4 build run on CPU; Python 3.11): mmcv's ops
# compile in ~35 min with MAX_JOBS=2 while other work ran; everything else installs in a few minutes.
# Then, in that environment:
#   umgkit data synth --out data/synthetic_world --num 200 --size 64
#   umgkit mmseg-train configs/mmseg/upernet_umg_synthetic.py --work-dir work_dirs/synthetic
#   python -m pytest tests/integrations            # the bridge tests that skip in CI
#
# Environment:
#   UMGKIT_MMSEG_CACHE  where the built mmcv wheel is kept and reused (default ~/.cache/umgkit/mmseg);
#                       building it takes over an hour on 2 cores, reusing it a few seconds.
#   MAX_JOBS            compiler processes for mmcv's ops (default: number of cores).
#   PYTHON              the interpreter the environment is made from (default python3; 3.9-3.11).
#   TORCH_INDEX_URL     an extra index for a specific torch build, e.g. PyTorch's CPU or cu121 index.
set -euo pipefail

if [[ $# -ne 1 || "$1" == -* ]]; then
    echo "usage: tools/mmseg_env.sh ENV_DIR   (a folder outside the repository)" >&2
    exit 2
fi
repo="$(cd "$(dirname "$0")/.." && pwd)"
env_dir="$(mkdir -p "$1" && cd "$1" && pwd)"
case "$env_dir/" in
    "$repo"/*) echo "mmseg_env.sh: $env_dir is inside the repository; name a folder outside it" >&2; exit 2;;
esac
cache="${UMGKIT_MMSEG_CACHE:-$HOME/.cache/umgkit/mmseg}"
mkdir -p "$cache"
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"

# The versions this bridge is tested with (see docs/mmseg.md for why each one).
torch_pins=(torch==2.5.1 torchvision==0.20.1)
mmcv_version=2.1.0
stack_pins=(mmengine==0.10.7 mmsegmentation==1.2.2 numpy==1.26.4 ftfy regex)
# umgkit's own requirements, resolved against torch 2.5.1 (the newest releases that accept it).
umgkit_pins=(-c "$repo/tools/mmseg_constraints.txt")

# A machine-wide pip constraint (e.g. a cap on torch) must not pick the versions of this environment.
export PIP_CONSTRAINT=""
export PIP_CONFIG_FILE=/dev/null

python_bin="${PYTHON:-python3}"
[[ -x "$env_dir/bin/python" ]] || "$python_bin" -m venv "$env_dir"
pip=("$env_dir/bin/python" -m pip)
"${pip[@]}" install --quiet --upgrade "pip<25" "setuptools<70" wheel

extra_index=()
[[ -n "${TORCH_INDEX_URL:-}" ]] && extra_index=(--extra-index-url "$TORCH_INDEX_URL")
echo "[mmseg_env] torch: ${torch_pins[*]}"
"${pip[@]}" install --quiet "${extra_index[@]}" "${torch_pins[@]}" numpy==1.26.4

torch_tag="$("$env_dir/bin/python" -c 'import sys, torch
print(f"torch{torch.__version__}-py{sys.version_info[0]}{sys.version_info[1]}")')"
wheel_dir="$cache/$torch_tag"
mkdir -p "$wheel_dir"
if ! ls "$wheel_dir"/mmcv-"$mmcv_version"-*.whl >/dev/null 2>&1; then
    echo "[mmseg_env] building mmcv $mmcv_version with ops (MAX_JOBS=$MAX_JOBS) into $wheel_dir (long)"
    start=$(date +%s)
    "${pip[@]}" install --quiet "mmengine==0.10.7" ninja psutil "opencv-python<4.11" addict yapf packaging \
        pyyaml
    MMCV_WITH_OPS=1 "${pip[@]}" wheel --no-build-isolation --no-deps --no-binary mmcv \
        "mmcv==$mmcv_version" --wheel-dir "$wheel_dir"
    echo "[mmseg_env] mmcv built in $(( $(date +%s) - start )) s"
else
    echo "[mmseg_env] reusing $(ls "$wheel_dir"/mmcv-"$mmcv_version"-*.whl)"
fi
"${pip[@]}" install --quiet "$wheel_dir"/mmcv-"$mmcv_version"-*.whl "${stack_pins[@]}" "${torch_pins[@]}"

echo "[mmseg_env] umgkit from $repo"
# Not the dev extra: its Gradio needs huggingface_hub >= 1.16, which transformers 4.x (torch 2.5) refuses.
"${pip[@]}" install --quiet "${umgkit_pins[@]}" "${torch_pins[@]}" --editable "$repo" pytest

"$env_dir/bin/python" - <<'PY'
import mmcv, mmengine, mmseg, torch, umgkit
from mmcv.ops import RoIAlign  # compiled ops are present
print(f"[mmseg_env] ready: torch {torch.__version__}, mmcv {mmcv.__version__}, "
      f"mmengine {mmengine.__version__}, mmseg {mmseg.__version__}, umgkit {umgkit.__version__}")
PY
echo "[mmseg_env] activate with: source $env_dir/bin/activate"
