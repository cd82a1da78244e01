#!/usr/bin/env bash
# Builds the source libraries' environment (pinned versions) and runs every verification:
# checkpoints written by lightly, solo-learn (+ Lightning), mmpretrain (+ mmengine), MMSelfSup's
# converter and the official MoCo/SimSiam builders, checked with simxir, exported back and
# strict-loaded into the source model. Tables -> results/checkpoints/, fixtures -> tests/models/fixtures/.
# Usage (repo root, simxir's .venv set up by the README's command):
#   bash benchmarks/checkpoints/run_all.sh [VENV=/tmp/venv-sources] [WORK=/tmp/checkpoint-sources]
# Needs the package registry (pip) and the git sources named below; nothing else is downloaded.
set -euo pipefail
VENV=${VENV:-/tmp/venv-sources}; WORK=${WORK:-/tmp/checkpoint-sources}
HERE=benchmarks/checkpoints; PY=.venv/bin/python
mkdir -p "$WORK"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q torch==2.13.0
  "$VENV/bin/pip" install -q numpy==2.4.6 pillow==13.0.0 scipy==1.17.1 scikit-learn==1.9.1 einops==0.8.2 \
    lightning==2.6.6 omegaconf==2.4.0 mmengine==0.10.7 mmcv-lite==2.2.0 importlib_metadata modelindex rich mat4py
  "$VENV/bin/pip" install -q --no-deps lightly==1.6.0 timm==1.0.31 mmpretrain==1.2.0
  # torchvision's model code without its C extension (the PyPI wheel's _C needs CUDA libraries)
  "$VENV/bin/pip" download -q --no-deps torchvision==0.28.0 -d "$WORK/tv"
  SP=$("$VENV/bin/python" -c "import site; print(site.getsitepackages()[0])")
  "$VENV/bin/python" - "$WORK/tv" "$SP" <<'PYEOF'
import glob, sys, zipfile
z = zipfile.ZipFile(glob.glob(sys.argv[1] + "/torchvision-*.whl")[0])
for n in z.namelist():
    if n.startswith("torchvision/") and not n.endswith(".so"):
        z.extract(n, sys.argv[2])
PYEOF
  echo "# emptied: registers kernels of torchvision's C extension, which is absent" > "$SP/torchvision/_meta_registrations.py"
fi
# the sources: SRC/moco/moco/builder.py (facebookresearch/moco@132aea9), SRC/simsiam/simsiam/builder.py
# (facebookresearch/simsiam), SRC/solo/solo/ (vturrisi/solo-learn@9187ea3),
# SRC/mmselfsup/extract_backbone_weights.py (open-mmlab/mmselfsup@1fcfd409)
SRC=${SRC:-$WORK/src}
for f in moco/moco/builder.py simsiam/simsiam/builder.py solo/solo/__init__.py mmselfsup/extract_backbone_weights.py; do
  [ -f "$SRC/$f" ] || { echo "missing $SRC/$f (see the comment above)"; exit 2; }
done
touch "$SRC/moco/moco/__init__.py" "$SRC/simsiam/simsiam/__init__.py"
V="$VENV/bin/python"
$V $HERE/verify_lightly.py source "$WORK/lightly" && $PY $HERE/verify_lightly.py check "$WORK/lightly" \
  && $V $HERE/verify_lightly.py roundtrip "$WORK/lightly" && $PY $HERE/verify_lightly.py table "$WORK/lightly"
$V $HERE/verify_official.py source "$WORK/official" "$SRC" && $PY $HERE/verify_official.py check "$WORK/official" \
  && $V $HERE/verify_official.py roundtrip "$WORK/official" "$SRC" && $PY $HERE/verify_official.py table "$WORK/official"
$V $HERE/verify_solo.py source "$WORK/solo" "$SRC/solo" && $PY $HERE/verify_solo.py check "$WORK/solo" \
  && $V $HERE/verify_solo.py roundtrip "$WORK/solo" "$SRC/solo" && $PY $HERE/verify_solo.py table "$WORK/solo"
$V $HERE/verify_mmpretrain.py source "$WORK/mm" && $PY $HERE/verify_mmpretrain.py check "$WORK/mm" \
  && $V $HERE/verify_mmpretrain.py roundtrip "$WORK/mm" && $PY $HERE/verify_mmpretrain.py table "$WORK/mm" \
  && $PY $HERE/verify_mmpretrain.py mmselfsup "$WORK/mm" "$SRC/mmselfsup/extract_backbone_weights.py"
# ViTs: DINO (facebookresearch/dino@7c446df: vision_transformer.py, utils.py in SRC/dino) and DINOv2
# (facebookresearch/dinov2@b8931f7: dinov2/models, dinov2/layers in SRC/dinov2); needs pillow beside torch
export XFORMERS_DISABLED=1
$V $HERE/verify_vit.py source "$WORK/vit" "$SRC" && $PY $HERE/verify_vit.py check "$WORK/vit" \
  && $V $HERE/verify_vit.py roundtrip "$WORK/vit" "$SRC" && $PY $HERE/verify_vit.py table "$WORK/vit"
# MoCo v3 (facebookresearch/moco-v3@c349e6e: vits.py, moco/ in SRC/moco-v3), iBOT (bytedance/ibot@da316d8:
# models/, utils.py in SRC/ibot), MAE (facebookresearch/mae@efb2a80: models_mae.py, models_vit.py, util/ in
# SRC/mae), on timm 0.4.9 and numpy 1.23.5 (MAE's np.float) in their own environment
TV=${TV:-/tmp/venv-timm}
if [ ! -x "$TV/bin/python" ]; then
  python3 -m venv "$TV"
  "$TV/bin/pip" install -q torch==2.13.0 numpy==1.23.5 pillow
  "$TV/bin/pip" install -q --no-deps timm==0.4.9
  TSP=$("$TV/bin/python" -c "import site; print(site.getsitepackages()[0])")
  SP=$("$VENV/bin/python" -c "import site; print(site.getsitepackages()[0])")
  cp -r "$SP/torchvision" "$TSP/"      # the python files extracted above
fi
T="$TV/bin/python -W ignore"
$T $HERE/verify_mocov3_ibot_mae.py source "$WORK/vit-more" "$SRC" && $PY $HERE/verify_mocov3_ibot_mae.py check "$WORK/vit-more" \
  && $T $HERE/verify_mocov3_ibot_mae.py roundtrip "$WORK/vit-more" "$SRC" \
  && $PY $HERE/verify_mocov3_ibot_mae.py table "$WORK/vit-more"
