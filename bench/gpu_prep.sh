#!/usr/bin/env bash
# Prepare a run of bench/gpu_run.sh on a GPU machine that reaches no package registry and has
# no ../shared/data: from the project root,
#
#   bash bench/gpu_prep.sh
#
# builds .devwheels/ (packages that machine lacks, via ../shared/tools/device_prep.sh: nibabel,
# psygnal, monai, SimpleITK, and isal, platformdirs, pydicom which unet_engine imports) and
# .devdata/hippocampus/ (the bundled model's validation cases and the first 40 cases: the real
# data the GPU benchmarks read), both git-ignored; carry both and run there
#
#   source .devwheels/setup.sh && bash bench/gpu_run.sh
set -euo pipefail
root=$(git rev-parse --show-toplevel); cd "$root"
EXTRA_WHEELS="isal platformdirs pydicom ${EXTRA_WHEELS:-}" bash ../shared/tools/device_prep.sh
grep -qs '^/.devdata/' .git/info/exclude || echo '/.devdata/' >> .git/info/exclude
src=../shared/data/hippocampus
dst=.devdata/hippocampus
rm -rf "$dst" && mkdir -p "$dst/imagesTr" "$dst/labelsTr"
python3 - "$src" "$dst" <<'PY'
import json, shutil, sys
from pathlib import Path
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
card = json.loads(Path("unet_engine/resources/models/default/card.json").read_text())
names = sorted(p.name for p in (src / "imagesTr").iterdir() if p.name.endswith(".nii.gz"))[:40]
names += [c["id"] + ".nii.gz" for c in card["training"]["dataset"]["cases"] if c["split"] == "val"]
for name in sorted(set(names)):
    for sub in ("imagesTr", "labelsTr"):
        shutil.copy2(src / sub / name, dst / sub / name)
print(f"{len(set(names))} hippocampus cases in {dst}")
PY
du -sh .devwheels .devdata
