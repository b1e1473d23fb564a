"""Real data for sliding-window checks: the hippocampus validation cases of the bundled model's
card, each normalised as ``predict_volume`` normalises it, packed into one mosaic volume.

A single hippocampus crop (~35 x 50 x 35) fits in one inference window, so it never tests
tiling; the mosaic (36 cases in a 3 x 3 x 4 grid, ~130 x 170 x 160) is tiled by every method,
with window borders falling inside cases, and Dice against the ground truth is measured per
case inside its own box. Cases are placed at their cell's origin; the rest of a cell repeats
the case's edge voxels (as ``predict_volume`` pads), labelled background and not scored.
With cells that just fit the cases, 40 x 56 x 40 windows line up with the cells (each window
sees about one case, as in training); a ``margin`` breaks that alignment.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from unet_engine.model.checkpoint import ModelCard  # noqa: E402
from unet_engine.io.volume_io import read_mask, read_volume  # noqa: E402
from unet_engine.metrics import dice  # noqa: E402
from unet_engine.model.preprocessing import prepare_image  # noqa: E402
from unet_engine.volume import Volume  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "hippocampus"
FIXTURES = ROOT / "tests" / "data" / "hippocampus"


@dataclass
class Case:
    id: str
    volume: Volume
    label: np.ndarray


@dataclass
class Mosaic:
    image: np.ndarray  # float32 [k, j, i], already normalised
    label: np.ndarray  # uint8 ground truth (0 outside the cases)
    boxes: list[tuple[slice, slice, slice]]  # one per case


def val_case_ids(card: ModelCard) -> list[str]:
    """The validation split of the card's training dataset."""
    return [c["id"] for c in card.training["dataset"]["cases"] if c["split"] == "val"]


def load_cases(ids: list[str], folder: Path = DATA) -> list[Case]:
    """Image and label map of each case id under ``folder`` (imagesTr / labelsTr)."""
    out = []
    for cid in ids:
        vol = read_volume(folder / "imagesTr" / f"{cid}.nii.gz")
        out.append(Case(cid, vol, read_mask(folder / "labelsTr" / f"{cid}.nii.gz", vol)))
    return out


def build_mosaic(cases: list[Case], card: ModelCard, grid: tuple[int, int, int] = (3, 3, 4), margin: int = 0) -> Mosaic:
    """Pack the first ``prod(grid)`` cases, each normalised on its own, into one volume.

    ``margin``: voxels added to every cell edge, the case centred in its cell (0: cells
    fit the largest case, cases at the cell origin).
    """
    n = int(np.prod(grid))
    if len(cases) < n:
        raise ValueError(f"a {grid} mosaic needs {n} cases, got {len(cases)}")
    cases = cases[:n]
    cell = tuple(max(c.volume.shape[a] for c in cases) + margin for a in range(3))
    shape = tuple(g * c for g, c in zip(grid, cell))
    image = np.empty(shape, np.float32)
    label = np.zeros(shape, np.uint8)
    boxes = []
    for idx, case in zip(np.ndindex(*grid), cases):
        img = prepare_image(case.volume, card)
        before = [(c - s) // 2 if margin else 0 for c, s in zip(cell, img.shape)]
        pad = [(b, c - s - b) for b, c, s in zip(before, cell, img.shape)]
        cell_box = tuple(slice(i * c, (i + 1) * c) for i, c in zip(idx, cell))
        image[cell_box] = np.pad(img, pad, mode="edge")
        box = tuple(slice(i * c + b, i * c + b + s) for i, c, b, s in zip(idx, cell, before, img.shape))
        label[box] = case.label
        boxes.append(box)  # type: ignore[arg-type]
    return Mosaic(image, label, boxes)  # type: ignore[arg-type]


def mosaic_dice(pred: np.ndarray, mosaic: Mosaic, labels: tuple[int, ...] = (1, 2)) -> dict[int, float]:
    """Mean over cases of the Dice per label, each case scored inside its own box."""
    return {lab: float(np.mean([dice(pred[b], mosaic.label[b], lab) for b in mosaic.boxes])) for lab in labels}
