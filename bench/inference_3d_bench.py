"""3D inference on the CPU: SegLoop's predict_volume vs MONAI's sliding_window_inference.

The bundled default model (a 3D U-Net) on the real hippocampus validation cases listed in
its card, same network and weights for every method, in one process:

* ``ours``              - ``run_generator(predict_volume(model, card, volume, device="cpu"))``:
                          normalisation, BatchNorm folded, channels-last, inference_mode,
                          Gaussian sliding window (50 % overlap) with the patch of
                          ``inference_runner.patch_size`` (the card's training patch when it
                          has one, else the whole volume rounded up, capped at 128), edge
                          padding at the end; it also computes fp16 probabilities and the
                          normalised entropy of every voxel (the others give labels only);
* ``monai-train-patch`` - the standard nnU-Net/MONAI way: ``sliding_window_inference`` with
                          ROI = ``card.training["config"]["patch_size"]``, overlap 0.5,
                          ``mode="gaussian"``, its own padding (zeros, split before/after),
                          unfused network in eval mode under ``torch.no_grad``, logits blended,
                          softmax + argmax;
* ``monai-our-patch``   - the same with ROI = the patch ``ours`` uses and the input padded as
                          ``ours`` pads it (edge, at the end): equal work, equal input;
* ``monai-whole-volume``- ROI = the whole volume rounded up to the network's multiple
                          (``sliding_window.default_patch_size``): one window per case.

Every MONAI path gets the input ``predict_volume`` builds (``prepare_image`` with the card:
statistics of the whole image, no resampling), normalised inside the timed call as ``ours``
does. ms/case = best of ``--repeats`` runs over all cases (methods interleaved, after one
untimed warm-up on two cases) divided by the number of cases; the machine is shared, so
only the best run counts. Dice per label is against the ground truth (mean over cases),
"voxels equal to ours" over all voxels of all cases.

Run: ``.venv/bin/python bench/inference_3d_bench.py [--repeats 3] [--threads 1] [--cases N] [--clock wall]``
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from unet_engine.model.checkpoint import ModelCard, load_checkpoint  # noqa: E402
from unet_engine.devices import set_cpu_threads  # noqa: E402
from unet_engine.inference.predict import predict_volume  # noqa: E402
from unet_engine.inference.runner import patch_size  # noqa: E402
from unet_engine.io.volume_io import read_mask, read_volume  # noqa: E402
from unet_engine.metrics import dice  # noqa: E402
from unet_engine.model.network import required_multiple  # noqa: E402
from unet_engine.paths import BUNDLED_MODELS  # noqa: E402
from unet_engine.model.preprocessing import prepare_image  # noqa: E402
from unet_engine.progress import run_generator  # noqa: E402
from unet_engine.inference.sliding_window import default_patch_size  # noqa: E402
from unet_engine.volume import Volume  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "hippocampus"
BASELINE = "monai-train-patch"

Case = tuple[str, Volume, np.ndarray]
Method = Callable[[Volume], np.ndarray]


def load_cases(card: ModelCard, n: int | None) -> list[Case]:
    """``(id, image, label map)`` of the card's validation cases (the first ``n``)."""
    ids = [c["id"] for c in card.training["dataset"]["cases"] if c["split"] == "val"][:n]
    out = []
    for cid in ids:
        vol = read_volume(DATA / "imagesTr" / f"{cid}.nii.gz")
        out.append((cid, vol, read_mask(DATA / "labelsTr" / f"{cid}.nii.gz", vol)))
    return out


def monai_labels(
    model: torch.nn.Module, card: ModelCard, vol: Volume, roi: tuple[int, ...], pad_like_ours: bool = False
) -> np.ndarray:
    """Labels from MONAI's Gaussian sliding window (overlap 0.5, batch 1) over the normalised image."""
    from monai.inferers import sliding_window_inference

    image = prepare_image(vol, card)
    shape = image.shape
    if pad_like_ours:  # as inference_runner.run_patches: edge padding at the end up to the patch
        image = np.pad(image, [(0, max(0, p - s)) for s, p in zip(shape, roi)], mode="edge")
    x = torch.from_numpy(np.ascontiguousarray(image))[None, None]
    with torch.no_grad():
        logits = sliding_window_inference(x, roi, 1, model, overlap=0.5, mode="gaussian")
        labels = torch.softmax(logits, dim=1).argmax(dim=1)[0].numpy().astype(np.uint8)
    return labels[tuple(slice(0, s) for s in shape)]


def methods(model: torch.nn.Module, card: ModelCard) -> dict[str, Method]:
    """The compared methods: volume -> label map on its grid."""
    train_roi = tuple(int(p) for p in card.training["config"]["patch_size"])
    m = required_multiple(card.spec)
    return {
        "ours": lambda v: run_generator(predict_volume(model, card, v, device="cpu")).labels,
        "monai-train-patch": lambda v: monai_labels(model, card, v, train_roi),
        "monai-our-patch": lambda v: monai_labels(model, card, v, patch_size(card, v.shape), pad_like_ours=True),
        "monai-whole-volume": lambda v: monai_labels(model, card, v, default_patch_size(v.shape, m)),
    }


def bench(
    fns: dict[str, Method], cases: list[Case], repeats: int, clock: Callable[[], float]
) -> tuple[dict[str, float], dict[str, list[np.ndarray]]]:
    """Best total time per method over ``repeats`` interleaved runs, and the labels of the last run."""
    for fn in fns.values():  # warm-up (model preparation, MONAI imports, allocator)
        for _, vol, _ in cases[:2]:
            fn(vol)
    best = {k: float("inf") for k in fns}
    labels: dict[str, list[np.ndarray]] = {}
    for r in range(repeats):
        for k, fn in fns.items():
            t = clock()
            labels[k] = [fn(vol) for _, vol, _ in cases]
            best[k] = min(best[k], clock() - t)
        so_far = ", ".join(f"{k} {best[k] / len(cases) * 1e3:.0f}" for k in fns)
        print(f"run {r + 1}/{repeats}: {so_far} ms/case (best so far)", flush=True)
    return best, labels


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--cases", type=int, default=None, help="first N validation cases (default: all)")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="wall clock or this process's CPU time")
    args = ap.parse_args()
    threads = set_cpu_threads(args.threads)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    model, card = load_checkpoint(BUNDLED_MODELS / "default", "cpu")
    if card.spec.dims != 3 or card.preprocess_config.target_spacing is not None:
        raise SystemExit("this benchmark needs a 3D default model without resampling (the MONAI paths do not resample)")
    cases = load_cases(card, args.cases)
    n = len(cases)
    voxels = sum(int(np.prod(v.shape)) for _, v, _ in cases)
    ours_patches = sorted({patch_size(card, v.shape) for _, v, _ in cases})
    import monai

    print(f"{card.name} ({card.version}; base {card.spec.base_width}, depth {card.spec.depth}); {n} val cases, "
          f"{voxels / n / 1e3:.0f} kvoxels/case; training patch {card.training['config']['patch_size']}, ours uses "
          f"{', '.join('x'.join(map(str, p)) for p in ours_patches)}; torch {torch.__version__}, MONAI {monai.__version__}, "
          f"{threads} thread(s), {args.clock} clock, load average {os.getloadavg()[0]:.1f}", flush=True)
    fns = methods(model, card)
    best, labels = bench(fns, cases, args.repeats, clock)
    gts = [gt for _, _, gt in cases]
    print(f"\n| method | ms/case ({args.clock}) | ratio vs {BASELINE} | Dice ant | Dice post | voxels equal to ours |")
    print("|---|---|---|---|---|---|")
    for k in fns:
        d1 = np.mean([dice(p, g, 1) for p, g in zip(labels[k], gts)])
        d2 = np.mean([dice(p, g, 2) for p, g in zip(labels[k], gts)])
        same = sum(int((p == o).sum()) for p, o in zip(labels[k], labels["ours"])) / voxels
        print(f"| {k} | {best[k] / n * 1e3:.1f} | {best[k] / best[BASELINE]:.2f}x | {d1:.4f} | {d2:.4f} | "
              f"{'-' if k == 'ours' else f'{same * 100:.4f} %'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
