"""Interactions needed to reach Dice 0.90 with today's tools and the new ones (simulated user).

Usage: ``python bench/interaction_effort.py [--acdc N] [--budget B] [--methods grow,click3d,...]``
Reads ``../shared/data/formats/ct_spleen_nifti`` and ``../shared/data/cardiac_acdc`` (relative to
the repository root); each ACDC label (1 RV, 2 myocardium, 3 LV) is segmented as its own structure.

The simulated user (as interactive-segmentation papers simulate clicks and scribbles from the
reference label) always looks at the current result and corrects the *largest error region*:
the biggest 3D connected component of false negatives (reference, not segmented) or false
positives (segmented, not reference), at its interior point (maximum of the distance
transform, in mm). All slice work is on axial slices (view axis 0). Counting: one stroke
(press to release) = 1, one click = 1, one lasso outline = 1, one button (Interpolate) = 1.
The hand is perfect: an outline follows the reference contour exactly. That favours the
slice-drawing tools (today's tools most), so the ratios below are conservative for the new tools.

Methods:

* ``today``: brush + Fill + Interpolate (what the app has). A key slice is drawn as one
  outline stroke per contour (outer boundary of each 2D component and each hole) plus one
  Fill click per component to fill the inside: the slice then equals the reference. Key
  slices are added greedily (the slice with the most wrong voxels after interpolation)
  until the 3D Dice reaches 0.90; Interpolate (1) is counted once.
* ``lasso``: the same key-slice loop with the new lasso: one outline per contour (a hole is
  one lasso-erase outline), no Fill click; Interpolate counted once.
* ``smart``: the same key-slice loop; a key slice is painted with the smart brush
  (``smart_footprint``, tolerance 0.4, a brush as wide as the structure's thickest part,
  6..30 mm): one stroke (a scribble, see ``grow``) in the slice's largest missing piece
  at a time, until the slice Dice
  reaches 0.95 (or 8 strokes); false positives on the slice are erased with one plain
  brush stroke each (modelled as removing that 2D piece).
* ``grow``: Grow from seeds (:class:`SeedGrower`). Start: one label stroke through the
  reference's interior point on its slice, one background stroke looping around the
  structure 4 mm outside its outline on that slice. Then: grow; on the slice of the
  largest error region's interior point, a label stroke (false negative) or background
  stroke (false positive) in that slice's error piece, grow again. A stroke is a scribble
  as in the interactive-segmentation literature: the longest path along the skeleton of
  the error piece (eroded by the 3-voxel brush so the brush stays inside it).
* ``click3d`` / ``click2d``: Click to segment (``region_from_click``, default tolerance 0.5): a click
  at the interior point of the largest false-negative region adds the grown region; a leak
  refusal costs one more interaction (tolerance halved, click again); a false-positive
  region is erased with one lasso outline on its slice (removes that 2D piece).

``grow-all`` (ACDC): Grow from seeds with the three labels at once, seeded and corrected the
same way (a scribble of the true label in the largest wrongly-labelled region), until every
label reaches 0.90; compared with today's interactions summed over the three labels.

A method stops at Dice >= 0.90 or when the budget of interactions is spent (the table then
shows the Dice reached). "s/update" is the mean compute time of one tool update on this
machine (2 shared CPU cores).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage import measure
from skimage.morphology import skeletonize

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from desktop_app.state.grow_seeds import BACKGROUND, SeedError, SeedGrower  # noqa: E402
from desktop_app.state.interpolation import interpolation_patch  # noqa: E402
from desktop_app.state.lasso import LassoError, polygon_selection  # noqa: E402
from desktop_app.state.region_click import ClickError, region_from_click  # noqa: E402
from desktop_app.state.smart_brush import smart_footprint  # noqa: E402
from unet_engine.io.volume_io import read_volume  # noqa: E402

DATA = ROOT / ".." / "shared" / "data"
TARGET = 0.90
METHODS = ("today", "lasso", "smart", "grow", "click3d", "click2d")


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int((a & b).sum()) / s


class Case:
    """One structure to segment: image, spacing, binary reference."""

    def __init__(self, name: str, image: np.ndarray, spacing: tuple[float, float, float], ref: np.ndarray):
        self.name, self.image, self.spacing, self.ref = name, image.astype(np.float32), spacing, ref.astype(bool)


# ----- error regions ---------------------------------------------------------------------
def largest_error(seg: np.ndarray, ref: np.ndarray, spacing) -> tuple[str, tuple[int, int, int]] | None:
    """("fn" | "fp", interior point) of the biggest 3D error component, or None."""
    best = None
    for kind, err in (("fn", ref & ~seg), ("fp", seg & ~ref)):
        lab, n = ndimage.label(err)
        if n == 0:
            continue
        sizes = np.bincount(lab.ravel())[1:]
        i = int(np.argmax(sizes))
        if best is None or sizes[i] > best[0]:
            best = (int(sizes[i]), kind, lab == i + 1)
    if best is None:
        return None
    _, kind, comp = best
    return kind, interior_point(comp, spacing)


def interior_point(region: np.ndarray, spacing) -> tuple[int, ...]:
    bb = ndimage.find_objects(region.astype(np.uint8))[0]
    sub = np.pad(region[bb], 1)
    dt = ndimage.distance_transform_edt(sub, sampling=spacing)
    p = np.unravel_index(int(np.argmax(dt)), sub.shape)
    return tuple(int(q) - 1 + s.start for q, s in zip(p, bb))


def piece(region2d: np.ndarray, rc: tuple[int, int]) -> np.ndarray:
    lab, _ = ndimage.label(region2d)
    return lab == lab[rc] if lab[rc] else np.zeros_like(region2d)


def scribble(region2d: np.ndarray, rc: tuple[int, int], brush: int = 1) -> np.ndarray:
    """One stroke (press to release) in the region piece holding ``rc``: the longest path
    along the skeleton of the piece (eroded by the brush radius so the brush stays inside),
    painted with a brush of radius ``brush`` voxels and kept inside the piece."""
    pc = piece(region2d, rc)
    inner = ndimage.binary_erosion(pc, iterations=brush) if brush else pc
    if not inner.any():
        inner = pc
    skel = skeletonize(inner)
    out = np.zeros_like(region2d)
    if not skel.any():
        out[rc] = True
        return out
    for r, c in longest_path(skel, rc):
        out[r, c] = True
    return (ndimage.binary_dilation(out, iterations=brush) & pc) if brush else out


def longest_path(skel: np.ndarray, near: tuple[int, int]) -> list[tuple[int, int]]:
    """The longest shortest path (8-connected) in the skeleton component nearest ``near``."""
    pts = np.argwhere(skel)
    start = tuple(pts[int(np.argmin(((pts - np.asarray(near)) ** 2).sum(axis=1)))])
    far, _ = _bfs(skel, start)
    end, prev = _bfs(skel, far)
    path, node = [end], end
    while node != far:
        node = prev[node]
        path.append(node)
    return path


def _bfs(skel: np.ndarray, start: tuple[int, int]):
    from collections import deque

    prev = {start: start}
    queue, last = deque([start]), start
    while queue:
        last = node = queue.popleft()
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                nb = (node[0] + dr, node[1] + dc)
                if (0 <= nb[0] < skel.shape[0] and 0 <= nb[1] < skel.shape[1] and skel[nb]
                        and nb not in prev):
                    prev[nb] = node
                    queue.append(nb)
    return last, prev


def contours_of(slice_ref: np.ndarray) -> tuple[int, int]:
    """(components, holes) of a 2D shape."""
    lab, n = ndimage.label(slice_ref)
    holes = 0
    for i in range(1, n + 1):
        comp = lab == i
        filled = ndimage.binary_fill_holes(comp)
        holes += ndimage.label(filled & ~comp)[1]
    return n, holes


# ----- slice-drawing methods (key slices + interpolation) -----------------------------------
def key_slice_method(case: Case, draw: Callable[[int], tuple[np.ndarray, int, float]], budget: int) -> dict:
    """Greedy key slices: draw the worst slice, interpolate, until Dice >= target."""
    ref, seg = case.ref, np.zeros_like(case.ref)
    drawn = np.zeros_like(case.ref)
    keys: set[int] = set()
    count, times = 1, []  # the final Interpolate
    while True:
        err = (seg ^ ref).sum(axis=(1, 2))
        err[list(keys)] = -1
        k = int(np.argmax(err))
        if err[k] <= 0:
            break
        slice_seg, n, secs = draw(k)
        count += n
        times.append(secs)
        keys.add(k)
        drawn[k] = slice_seg
        t0 = time.perf_counter()
        seg = interpolate(drawn, case.spacing)
        times.append(time.perf_counter() - t0)
        if dice(seg, ref) >= TARGET or count >= budget:
            break
    return {"count": count, "dice": dice(seg, ref), "secs": float(np.mean(times)) if times else 0.0,
            "keys": len(keys)}


def interpolate(drawn: np.ndarray, spacing) -> np.ndarray:
    mask = drawn.astype(np.uint8)
    patch = interpolation_patch(mask, 1, 0, spacing)
    if patch.bbox is not None:
        mask[tuple(slice(a, b) for a, b in patch.bbox)][patch.sel] = 1
    return mask.astype(bool)


def draw_today(case: Case) -> Callable[[int], tuple[np.ndarray, int, float]]:
    def draw(k: int):
        comps, holes = contours_of(case.ref[k])
        return case.ref[k].copy(), comps + holes + comps, 0.0  # outlines + one Fill per component

    return draw


def draw_lasso(case: Case) -> Callable[[int], tuple[np.ndarray, int, float]]:
    def draw(k: int):
        ref = case.ref[k]
        out = np.zeros_like(ref)
        n, t0 = 0, time.perf_counter()
        lab, ncomp = ndimage.label(ref)
        for i in range(1, ncomp + 1):
            comp = lab == i
            filled = ndimage.binary_fill_holes(comp)
            for shape, value in [(filled, True)] + [(h, False) for h in _holes(filled, comp)]:
                contour = max(measure.find_contours(np.pad(shape, 1).astype(float), 0.5), key=len) - 1
                try:
                    sel = polygon_selection(ref.shape, [tuple(p) for p in contour])
                except LassoError:
                    sel = shape
                out[sel] = value
                n += 1
        return out, n, time.perf_counter() - t0

    return draw


def _holes(filled: np.ndarray, comp: np.ndarray) -> list[np.ndarray]:
    lab, n = ndimage.label(filled & ~comp)
    return [lab == i for i in range(1, n + 1)]


def draw_smart(case: Case, brush_mm: float | None = None, tolerance: float = 0.4, max_strokes: int = 8):
    sp2 = case.spacing[1:]
    if brush_mm is None:  # the user picks a brush about as wide as the structure
        k = int(np.argmax(case.ref.sum(axis=(1, 2))))
        width = 2.0 * ndimage.distance_transform_edt(np.pad(case.ref[k], 1), sampling=sp2).max()
        brush_mm = float(np.clip(width, 6.0, 30.0))
    rad = [brush_mm / 2 / s for s in sp2]
    rr, cc = np.ogrid[-int(rad[0]):int(rad[0]) + 1, -int(rad[1]):int(rad[1]) + 1]
    foot = (rr / rad[0]) ** 2 + (cc / rad[1]) ** 2 <= 1.0
    h0, h1 = foot.shape[0] // 2, foot.shape[1] // 2

    def dab(out: np.ndarray, img: np.ndarray, r: int, c: int) -> None:
        r0, r1, c0, c1 = r - h0, r + h0 + 1, c - h1, c + h1 + 1
        pr0, pc0 = max(0, -r0), max(0, -c0)
        pr1, pc1 = foot.shape[0] - max(0, r1 - img.shape[0]), foot.shape[1] - max(0, c1 - img.shape[1])
        sl = (slice(max(0, r0), min(img.shape[0], r1)), slice(max(0, c0), min(img.shape[1], c1)))
        fp = foot[pr0:pr1, pc0:pc1]
        sel = smart_footprint(img[sl], fp, (r - max(0, r0), c - max(0, c0)), tolerance)
        out[sl] |= sel

    def draw(k: int):
        ref, img = case.ref[k], case.image[k]
        out = np.zeros_like(ref)
        n, t0, dabs = 0, time.perf_counter(), 0
        while n < max_strokes and dice(out, ref) < 0.95:
            fn, fp = ref & ~out, out & ~ref
            lab_fn, nfn = ndimage.label(fn)
            lab_fp, nfp = ndimage.label(fp)
            big_fn = np.bincount(lab_fn.ravel())[1:].max() if nfn else 0
            big_fp = np.bincount(lab_fp.ravel())[1:].max() if nfp else 0
            n += 1
            if big_fp > big_fn:
                comp = lab_fp == 1 + int(np.argmax(np.bincount(lab_fp.ravel())[1:]))
                out &= ~comp
                continue
            comp = lab_fn == 1 + int(np.argmax(np.bincount(lab_fn.ravel())[1:]))
            p = interior_point(comp, sp2)
            path = np.argwhere(scribble(comp, p, brush=0))
            step = max(1, int(min(rad) // 2))
            for r, c in path[::step]:
                dab(out, img, int(r), int(c))
                dabs += 1
        return out, n, (time.perf_counter() - t0) / max(1, dabs)

    return draw


# ----- 3D methods ----------------------------------------------------------------------------
def grow_method(case: Case, budget: int, **kw) -> dict:
    ref = case.ref
    grower = SeedGrower(case.image, case.spacing, **kw)
    k, j, i = interior_point(ref, case.spacing)
    sp2 = case.spacing[1:]
    fg = scribble(ref[k], (j, i))
    ring = ndimage.binary_fill_holes(ref[k])
    dil = ndimage.distance_transform_edt(~ring, sampling=sp2) <= 4.0
    bg = dil & ~ndimage.binary_erosion(dil, iterations=1, border_value=1)
    seeds = {1: _pts(k, fg), BACKGROUND: _pts(k, bg)}
    count, times, seg = 2, [], np.zeros_like(ref)
    while True:
        try:
            res = grower.grow(seeds)
        except SeedError as exc:
            return {"count": count, "dice": 0.0, "secs": 0.0, "error": str(exc)}
        times.append(res.seconds)
        seg = np.zeros_like(ref)
        seg[tuple(slice(a, b) for a, b in res.bbox)] = res.labels == 1
        d = dice(seg, ref)
        if d >= TARGET or count >= budget:
            break
        err = largest_error(seg, ref, case.spacing)
        if err is None:
            break
        kind, (k, j, i) = err
        region = (ref & ~seg) if kind == "fn" else (seg & ~ref)
        stroke = _pts(k, scribble(region[k], (j, i)))
        label = 1 if kind == "fn" else BACKGROUND
        seeds[label] = np.concatenate([seeds[label], stroke])
        count += 1
    return {"count": count, "dice": dice(seg, ref), "secs": float(np.mean(times)),
            "first_s": times[0], "shrink": res.shrink}


def grow_all_method(image: np.ndarray, spacing, ref_labels: np.ndarray, budget: int) -> dict:
    """Grow every label at once (e.g. ACDC's RV, myocardium, LV) until each has Dice >= 0.90.

    Start: one scribble per label at its interior point, one background loop 4 mm around all
    labels on the first label's slice. Then a scribble of the true label (background where
    the reference is 0) in the largest wrongly-labelled region."""
    values = [int(v) for v in np.unique(ref_labels) if v != BACKGROUND]
    grower = SeedGrower(image.astype(np.float32), spacing)
    seeds: dict[int, np.ndarray] = {}
    for v in values:
        k, j, i = interior_point(ref_labels == v, spacing)
        seeds[v] = _pts(k, scribble(ref_labels[k] == v, (j, i)))
    k0 = int(seeds[values[0]][0, 0])
    filled = ndimage.binary_fill_holes(ref_labels[k0] > 0)
    dil = ndimage.distance_transform_edt(~filled, sampling=spacing[1:]) <= 4.0
    seeds[BACKGROUND] = _pts(k0, dil & ~ndimage.binary_erosion(dil, iterations=1, border_value=1))
    count, times = len(values) + 1, []
    while True:
        res = grower.grow(seeds)
        times.append(res.seconds)
        seg = np.zeros(ref_labels.shape, res.labels.dtype)
        seg[tuple(slice(a, b) for a, b in res.bbox)] = res.labels
        dices = {v: dice(seg == v, ref_labels == v) for v in values}
        if min(dices.values()) >= TARGET or count >= budget:
            break
        err = seg != ref_labels
        lab, n = ndimage.label(err)
        if n == 0:
            break
        comp = lab == 1 + int(np.argmax(np.bincount(lab.ravel())[1:]))
        k, j, i = interior_point(comp, spacing)
        true = int(ref_labels[k, j, i])
        stroke = _pts(k, scribble(comp[k] & (ref_labels[k] == true), (j, i)))
        seeds[true] = np.concatenate([seeds.get(true, np.zeros((0, 3), np.int64)), stroke])
        count += 1
    return {"count": count, "dices": dices, "secs": float(np.mean(times))}


def _pts(k: int, plane: np.ndarray) -> np.ndarray:
    rc = np.argwhere(plane)
    return np.c_[np.full(len(rc), k), rc].astype(np.int64)


def click_method(case: Case, budget: int, mode: str, tolerance: float = 0.5) -> dict:
    ref, seg = case.ref, np.zeros_like(case.ref)
    count, times = 0, []
    while count < budget and dice(seg, ref) < TARGET:
        err = largest_error(seg, ref, case.spacing)
        if err is None:
            break
        kind, (k, j, i) = err
        count += 1
        if kind == "fp":
            seg[k] &= ~piece((seg & ~ref)[k], (j, i))  # one lasso-erase outline on the slice
            continue
        tol = tolerance
        while True:
            t0 = time.perf_counter()
            try:
                box, sel = region_from_click(case.image, (k, j, i), case.spacing, tolerance=tol, mode=mode, axis=0)
                times.append(time.perf_counter() - t0)
                seg[tuple(slice(a, b) for a, b in box)] |= sel
                break
            except ClickError:
                times.append(time.perf_counter() - t0)
                tol /= 2
                count += 1
                if count >= budget:
                    break
    return {"count": count, "dice": dice(seg, ref), "secs": float(np.mean(times)) if times else 0.0}


# ----- driver ------------------------------------------------------------------------------
def run_case(case: Case, methods: tuple[str, ...], budget: int) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for m in methods:
        if m == "today":
            out[m] = key_slice_method(case, draw_today(case), budget)
        elif m == "lasso":
            out[m] = key_slice_method(case, draw_lasso(case), budget)
        elif m == "smart":
            out[m] = key_slice_method(case, draw_smart(case), budget)
        elif m.startswith("grow"):
            method = {"grow": "watershed", "grow_skimage": "skimage_watershed", "grow_rw": "random_walker"}[m]
            out[m] = grow_method(case, budget, method=method)
        elif m in ("click3d", "click2d"):
            out[m] = click_method(case, budget, mode=m[-2:])
    return out


def load_cases(n_acdc: int) -> list[Case]:
    spleen = DATA / "formats" / "ct_spleen_nifti"
    img = read_volume(spleen / "image.nii.gz")
    ref = read_volume(spleen / "label.nii.gz").array > 0
    cases = [Case("spleen CT", img.array, img.spacing, ref)]
    acdc = DATA / "cardiac_acdc"
    names = sorted((acdc / "imagesTr").glob("*_frame01.nii.gz"))[:n_acdc]
    for p in names:
        v = read_volume(p)
        lab = read_volume(acdc / "labelsTr" / p.name).array
        for value, what in ((1, "RV"), (2, "myo"), (3, "LV")):
            cases.append(Case(f"{p.name.split('_')[0]} {what}", v.array, v.spacing, lab == value))
    return cases


def fmt(r: dict) -> str:
    if r["dice"] >= TARGET:
        return f"{r['count']:>3}"
    return f"{r['count']:>3}*({r['dice']:.2f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--acdc", type=int, default=3, help="ACDC volumes (end-diastole frames)")
    ap.add_argument("--budget", type=int, default=40)
    ap.add_argument("--methods", default=",".join(METHODS))
    args = ap.parse_args()
    methods = tuple(args.methods.split(","))
    cases = load_cases(args.acdc)
    results = {}
    print("case".ljust(16) + "".join(m.rjust(14) for m in methods))
    for case in cases:
        results[case.name] = run_case(case, methods, args.budget)
        print(case.name.ljust(16) + "".join(fmt(results[case.name][m]).rjust(14) for m in methods), flush=True)
    print("\nmethod        mean interactions  cases at 0.90  mean Dice  s/update  vs today")
    base = np.mean([results[c.name]["today"]["count"] for c in cases]) if "today" in methods else None
    for m in methods:
        counts = [results[c.name][m]["count"] for c in cases]
        ok = sum(results[c.name][m]["dice"] >= TARGET for c in cases)
        dices = [results[c.name][m]["dice"] for c in cases]
        secs = [results[c.name][m]["secs"] for c in cases]
        ratio = f"{np.mean(counts) / base:.2f}x" if base else "-"
        print(f"{m:<14}{np.mean(counts):>17.1f}{ok:>9}/{len(cases)}{np.mean(dices):>11.3f}"
              f"{np.mean(secs):>10.3f}{ratio:>10}")
    new = [m for m in methods if m != "today"]
    if base and new:
        print("\nbest new tool per case (fewest interactions reaching 0.90) vs today:")
        for c in cases:
            ok_new = [(results[c.name][m]["count"], m) for m in new if results[c.name][m]["dice"] >= TARGET]
            if not ok_new:
                print(f"  {c.name:<16} none reached 0.90 within the budget")
                continue
            n, m = min(ok_new)
            today = results[c.name]["today"]["count"]
            print(f"  {c.name:<16} {m:<8} {n:>3} vs {today:>3}  ({n / today:.2f}x)")
    if args.acdc and "grow" in methods and "today" in methods:
        print("\nGrow from seeds with all ACDC labels at once (until every label has Dice >= 0.90) vs today's")
        print("brush + Fill + Interpolate summed over the three labels:")
        for p in sorted((DATA / "cardiac_acdc" / "imagesTr").glob("*_frame01.nii.gz"))[:args.acdc]:
            name = p.name.split("_")[0]
            v = read_volume(p)
            lab = read_volume(DATA / "cardiac_acdc" / "labelsTr" / p.name).array
            r = grow_all_method(v.array, v.spacing, lab, 3 * args.budget)
            today = sum(results[f"{name} {w}"]["today"]["count"] for w in ("RV", "myo", "LV"))
            d = " ".join(f"{x:.2f}" for x in r["dices"].values())
            print(f"  {name:<12} grow-all {r['count']:>3} (Dice RV/myo/LV {d}, {r['secs']:.2f} s/update)"
                  f"  vs today {today:>3}  ({r['count'] / today:.2f}x)", flush=True)
    print("\n* = target not reached within the budget (Dice reached in brackets)")


if __name__ == "__main__":
    main()
