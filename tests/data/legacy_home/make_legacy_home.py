"""Write ``home/`` as SegLoop wrote its data folder before projects existed (commit f86f4bf).

Run with THAT version of the code on the path, e.g.::

    git worktree add WORK/segloop_old f86f4bf
    PYTHONPATH=WORK/segloop_old python tests/data/legacy_home/make_legacy_home.py

It builds what the app and ``segloop train`` left in ``SEGLOOP_HOME``: the one retraining
dataset ``datasets/default`` (three hippocampus cases from tests/data/hippocampus, one with
an edited-voxel mask and model provenance), the one registry ``models/`` (v0001 imported
and active, v0002 fine-tuned from it, a fine-tune paused at step 2 whose resumable state
sits in ``models/training/<key>``) and ``effort_log.json``. A tiny network keeps it small.
Absolute paths the old code recorded are rewritten to a typical user's data folder
(``USER_HOME``), as if the folder had been copied from that user's machine.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
HIPPO = HERE.parent / "hippocampus"
USER_HOME = "/home/user/.local/share/segloop"


def main() -> None:
    import os

    tmp = Path(tempfile.mkdtemp(prefix="legacy_home_"))
    home = tmp / "segloop"
    os.environ["SEGLOOP_HOME"] = str(home)
    torch.set_num_threads(1)
    from desktop_app.state.effort import EffortLog, EffortRecord
    from unet_engine.checkpoint import ModelCard
    from unet_engine.dataset import RetrainingDataset
    from unet_engine.io import read_volume
    from unet_engine.model import ModelSpec, build_model
    from unet_engine.progress import CancelToken, run_generator
    from unet_engine.registry import ModelRegistry
    from unet_engine.train_config import TrainConfig
    from unet_engine.training import StepReport, fine_tune
    from unet_engine.errors import CancelledError

    labels = {1: "anterior", 2: "posterior"}
    ds = RetrainingDataset.create(home / "datasets" / "default", labels, modality="MRI")
    for n, name in enumerate(("hippocampus_001", "hippocampus_003", "hippocampus_148")):
        image = read_volume(HIPPO / "imagesTr" / f"{name}.nii.gz")
        label = read_volume(HIPPO / "labelsTr" / f"{name}.nii.gz").array
        edited = None
        if n == 1:
            edited = np.zeros(label.shape, bool)
            edited[10:14, 20:24, 15:18] = True
        ds.add_case(image, label, edited=edited, model_version="v0001" if n == 1 else None,
                    source_path=f"{name}.nii.gz", case_id=name)
    torch.manual_seed(0)
    spec = ModelSpec(dims=2, in_channels=1, num_classes=3, base_width=4, depth=2)
    card = ModelCard(spec=spec, labels={0: "background", **labels}, colours={1: [230, 25, 75], 2: [60, 180, 75]},
                     name="tiny legacy model")
    reg = ModelRegistry(home / "models")
    reg.add_version(build_model(spec), card, promote=True, source="import", name="tiny legacy model")
    cfg = TrainConfig(max_steps=4, steps_per_epoch=2, batch_size=2, warmup_steps=1, lr=3e-3, num_threads=1,
                      validate_at_start=False, checkpoint_every_steps=2, cache_cases=2, samples_per_case=2)
    run_generator(fine_tune(cfg, dataset=ds, registry=reg, from_version="v0001"))
    token = CancelToken()

    def pause_at_two(report) -> None:
        if isinstance(report, StepReport) and report.step >= 2:
            token.cancel()

    try:
        run_generator(fine_tune(cfg.replace(max_steps=8), dataset=ds, registry=reg, from_version="v0001",
                                cancel=token), pause_at_two)
    except CancelledError:
        pass
    EffortLog().add(EffortRecord(case="hippocampus_003.nii.gz", model_version="v0001", voxels_changed=48,
                                 voxels_total=int(np.prod(ds.cases()[1].shape)), dice={"anterior": 0.91,
                                 "posterior": 0.88}, dataset=str(ds.folder)))
    for path in home.rglob("*.json"):  # the old code's absolute paths, as on the user's machine
        text = path.read_text(encoding="utf-8")
        path.write_text(text.replace(str(home.resolve()), USER_HOME).replace(str(home), USER_HOME), encoding="utf-8")
    for lock in home.rglob(".segloop.lock"):
        lock.unlink()
    out = HERE / "home"
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(home, out)
    shutil.rmtree(tmp)
    print(f"wrote {out}: {sum(1 for p in out.rglob('*') if p.is_file())} files, "
          f"{sum(p.stat().st_size for p in out.rglob('*') if p.is_file()) / 1e6:.2f} MB", file=sys.stderr)


if __name__ == "__main__":
    main()
