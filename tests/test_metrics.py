"""Metrics on masks with hand-computed answers (Dice, IoU, HD95 with anisotropic spacing) and losses."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from unet_engine.training.losses import DiceCELoss
from unet_engine.metrics import (
    dice,
    evaluate,
    hd95,
    iou,
    json_safe,
    label_volume_ml,
    summarize,
    dice_or_none,
    mean_defined,
    surface_to_redraw,
    voxels_beyond_tolerance,
)


def test_dice_iou_by_hand():
    a = np.zeros((1, 4, 4), bool)
    b = np.zeros((1, 4, 4), bool)
    a[0, :2, :2] = True  # 4 voxels
    b[0, :2, :3] = True  # 6 voxels, overlap 4
    assert dice(a, b) == pytest.approx(2 * 4 / 10)
    assert iou(a, b) == pytest.approx(4 / 6)
    labels_p = a.astype(np.uint8) * 2
    labels_r = b.astype(np.uint8) * 2
    assert dice(labels_p, labels_r, label=2) == pytest.approx(0.8)


def test_empty_conventions():
    z = np.zeros((3, 3, 3), bool)
    one = z.copy()
    one[1, 1, 1] = True
    assert dice(z, z) == 1.0 and iou(z, z) == 1.0 and hd95(z, z) == 0.0
    assert dice(one, z) == 0.0 and iou(z, one) == 0.0 and math.isinf(hd95(one, z))


def test_hd95_single_voxels_with_anisotropic_spacing():
    a = np.zeros((10, 10, 10), bool)
    b = np.zeros_like(a)
    a[2, 5, 5] = True
    b[5, 5, 7] = True  # 3 steps along k (3 mm each), 2 along i (0.5 mm each)
    spacing = (3.0, 1.0, 0.5)
    assert hd95(a, b, spacing) == pytest.approx(math.hypot(9.0, 1.0))
    assert hd95(a, a, spacing) == 0.0


def test_hd95_shifted_slab_by_hand():
    # a slab 4 slices thick, shifted by 2 slices along k (2.5 mm each): every surface
    # point of one is at most 2 slices from the other's surface -> HD95 = 5 mm
    a = np.zeros((20, 12, 12), bool)
    b = np.zeros_like(a)
    a[5:9, 2:10, 2:10] = True
    b[7:11, 2:10, 2:10] = True
    assert hd95(a, b, (2.5, 0.8, 0.8)) == pytest.approx(5.0)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_hd95_matches_monai():
    monai_metrics = pytest.importorskip("monai.metrics")
    rng = np.random.default_rng(0)
    a = np.zeros((12, 30, 40), bool)
    b = np.zeros_like(a)
    a[3:9, 5:20, 8:30] = True
    b[4:11, 6:22, 4:28] = True
    a &= rng.random(a.shape) > 0.05
    sp = (3.0, 0.7, 1.1)
    ref = monai_metrics.compute_hausdorff_distance(
        torch.tensor(a)[None, None].float(), torch.tensor(b)[None, None].float(), include_background=True,
        percentile=95, spacing=sp)
    assert hd95(a, b, sp) == pytest.approx(float(ref), rel=1e-5)


def test_volume_and_evaluate():
    pred = np.zeros((4, 10, 10), np.uint8)
    ref = np.zeros_like(pred)
    pred[1:3, 2:6, 2:6] = 1  # 32 voxels
    ref[1:3, 2:6, 2:7] = 1  # 40 voxels
    ref[0, 0, 0] = 2  # label 2 only in the reference
    spacing = (2.0, 0.5, 0.5)
    assert label_volume_ml(pred, spacing, 1) == pytest.approx(32 * 0.5 / 1000)
    res = evaluate(pred, ref, {0: "background", 1: "a", 2: "b", 3: "c"}, spacing)
    assert set(res) == {"a", "b", "c"}
    assert res["a"]["dice"] == pytest.approx(64 / 72) and res["a"]["iou"] == pytest.approx(32 / 40)
    assert res["a"]["hd95"] == pytest.approx(0.5)
    assert res["b"]["dice"] == 0.0 and math.isinf(res["b"]["hd95"])
    # absent from both: n/a, not a perfect score
    assert res["c"] == {"label": 3, "dice": None, "iou": None, "hd95": None, "volume_ml_pred": 0.0, "volume_ml_ref": 0.0}
    mean = summarize([res, res])
    assert mean["a"]["dice"] == pytest.approx(64 / 72) and mean["b"]["hd95_nonfinite"] == 2
    assert mean["c"]["dice"] is None and mean["c"]["dice_na"] == 2 and mean["c"]["cases"] == 2
    json.dumps(json_safe(mean), allow_nan=False)


def test_a_label_absent_from_both_never_adds_one_to_a_mean():
    """The spleen-in-a-hippocampus-dataset trap: 'posterior' absent on both sides must not
    turn a 0.0 into a mean of 0.5."""
    ref = np.zeros((2, 6, 6), np.uint8)
    pred = np.zeros_like(ref)
    ref[0, 1:3, 1:3] = 1  # label 1 in the reference only: Dice 0
    assert dice(pred, ref, 2) == 1.0  # the raw pairwise convention is unchanged
    assert dice_or_none(pred, ref, 2) is None and dice_or_none(pred, ref, 1) == 0.0
    assert mean_defined([dice_or_none(pred, ref, k) for k in (1, 2)]) == 0.0
    assert mean_defined([None, None]) is None
    other = ref.copy()
    other[1, 4, 4] = 2
    per_case = [evaluate(pred, ref, {1: "spleen", 2: "posterior"}),
                evaluate(other, other, {1: "spleen", 2: "posterior"})]
    mean = summarize(per_case)
    assert mean["posterior"]["dice"] == 1.0 and mean["posterior"]["dice_na"] == 1  # one case defines it
    assert mean["spleen"]["dice"] == pytest.approx(0.5)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shape"):
        dice(np.zeros((2, 2)), np.zeros((2, 3)))


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (1, 3, 4, 6, 6)])
def test_dice_ce_loss_2d_3d(shape):
    torch.manual_seed(0)
    loss_fn = DiceCELoss(3)
    target = torch.randint(0, 3, (shape[0], *shape[2:]))
    perfect = torch.nn.functional.one_hot(target, 3).movedim(-1, 1).float() * 20
    random = torch.randn(shape, requires_grad=True)
    assert loss_fn(perfect, target) < 0.01
    loss = loss_fn(random, target)
    loss.backward()
    assert loss > 0.5 and random.grad is not None and torch.isfinite(random.grad).all()


def test_weight_map_scales_ce():
    torch.manual_seed(0)
    logits = torch.randn(1, 2, 4, 4)
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    ce_only = DiceCELoss(2, dice_weight=0.0)
    w = torch.ones(1, 4, 4)
    assert ce_only(logits, target, w * 3) == pytest.approx(float(ce_only(logits, target)), rel=1e-5)  # uniform: same mean
    w2 = torch.zeros(1, 4, 4)
    w2[0, 0, 0] = 1.0  # only one voxel counts
    expected = torch.nn.functional.cross_entropy(logits, target, reduction="none")[0, 0, 0]
    assert ce_only(logits, target, w2) == pytest.approx(float(expected), rel=1e-5)
    assert DiceCELoss(2, include_background=True)(logits, target) > 0


def _cube(lo: int, hi: int, shape=(20, 20, 20)) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    m[lo:hi, lo:hi, lo:hi] = 1
    return m


def test_surface_to_redraw_tolerates_one_voxel_and_counts_whole_outlines():
    ref = _cube(5, 15)
    n_surface = 10**3 - 8**3  # boundary voxels of a 10^3 cube
    assert surface_to_redraw(ref, ref) == 0
    # one voxel thicker on every side: faces are 1 mm from the other surface, the outer cube's
    # 12 edges (10 voxels each, sqrt(2) mm) and 8 corners (sqrt(3) mm) are farther
    assert surface_to_redraw(_cube(4, 16), ref, tolerance_mm=1.0) == 12 * 10 + 8
    assert surface_to_redraw(_cube(4, 16), ref, tolerance_mm=1.8) == 0
    assert surface_to_redraw(_cube(4, 16), ref, tolerance_mm=0.5) == (12**3 - 10**3) + n_surface
    # missed entirely: the whole reference outline is redrawn; a spurious blob: its whole outline
    assert surface_to_redraw(np.zeros_like(ref), ref) == n_surface
    assert surface_to_redraw(ref, np.zeros_like(ref)) == n_surface
    assert surface_to_redraw(np.zeros_like(ref), np.zeros_like(ref)) == 0
    # anisotropic spacing: a 1-voxel shift along a 2 mm axis is beyond a 1 mm tolerance
    shifted = np.roll(ref, 1, axis=0)
    assert surface_to_redraw(shifted, ref, spacing=(1.0, 1.0, 1.0)) == 0
    # the two end faces (2 x 100 voxels, 2 mm from the other surface) and the 6x6 core of each
    # cube's face lying inside the other cube (> 1 mm in plane from its sides, 2 mm along k)
    assert surface_to_redraw(shifted, ref, spacing=(2.0, 1.0, 1.0)) == 2 * 100 + 2 * 36
    # labels pick one structure
    two = ref.copy()
    two[ref == 1] = 2
    assert surface_to_redraw(two, ref, label=1) == n_surface


def test_voxels_beyond_tolerance_leaves_boundary_disagreement_and_counts_real_errors():
    ref = _cube(5, 15)
    assert voxels_beyond_tolerance(ref, ref) == 0
    # one voxel thicker on every side: faces 1 mm from the truth, the shell's 12 edges (sqrt 2 mm)
    # and 8 corners (sqrt 3 mm) are beyond 1 mm
    assert voxels_beyond_tolerance(_cube(4, 16), ref, tolerance_mm=1.0) == 12 * 10 + 8
    assert voxels_beyond_tolerance(_cube(4, 16), ref, tolerance_mm=1.8) == 0
    # one voxel thinner: every lost rim voxel touches the true background it was given
    assert voxels_beyond_tolerance(_cube(6, 14), ref, tolerance_mm=1.0) == 0
    # missed entirely: all but the rim (the 8^3 core is 2 mm or more from the true background)
    assert voxels_beyond_tolerance(np.zeros_like(ref), ref) == 8**3
    # a spurious blob where the label does not exist at all: every voxel counts
    blob = _cube(0, 3)
    assert voxels_beyond_tolerance(blob, np.zeros_like(blob)) == 27
    # anisotropic spacing: a one-slice shift along a 2 mm axis is beyond a 1 mm tolerance
    shifted = np.roll(ref, 1, axis=0)
    assert voxels_beyond_tolerance(shifted, ref, spacing=(1.0, 1.0, 1.0)) == 0
    # the added slab (100 voxels, 2 mm from the truth) and the lost slab's 8x8 core (its rim is
    # 1 mm in plane from the true background)
    assert voxels_beyond_tolerance(shifted, ref, spacing=(2.0, 1.0, 1.0)) == 100 + 8 * 8
    # a wrong label inside the structure is as far from its truth as its distance to that label
    two = ref.copy()
    two[ref == 1] = 2
    assert voxels_beyond_tolerance(two, ref) == 10**3
