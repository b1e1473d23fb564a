"""Preview-update time of the interactive tools on a 512 x 512 x 300 CT (CPU), and the
grow-from-seeds method comparison.

Usage: ``python bench/interactive_speed_bench.py [--no-alternatives]``

The CT is :func:`bench.synthetic_ct.make_ct` cut to 300 slices (0.8 x 0.8 x 1 mm); the
spleen-sized structure is its second organ (label 2, an ellipsoid of 180 x 80 x 72 mm).
Seeds are what a user paints: one stroke across the organ on three axial slices and one
background loop 5 mm around it on each. Timed: the first grow (builds the gradient cache),
a new stroke inside the box (reuses it), a stroke just outside the seeds' box (still
inside the cached box), a click (2D and 3D), a smart-brush dab and a lasso. Then the same
seeds with the alternative methods. Figures only, no assertions; the machine load is printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from desktop_app.state.grow_seeds import BACKGROUND, GrowCancelled, SeedGrower  # noqa: E402
from desktop_app.state.lasso import polygon_selection  # noqa: E402
from desktop_app.state.region_click import ClickError, region_from_click  # noqa: E402
from desktop_app.state.smart_brush import smart_footprint  # noqa: E402
from synthetic_ct import SPACING, make_ct  # noqa: E402

LABEL = 2


def build_ct() -> tuple[np.ndarray, np.ndarray]:
    vol, mask = make_ct()
    return np.ascontiguousarray(vol[50:350]), np.ascontiguousarray(mask[50:350])


def stroke_seeds(mask: np.ndarray, slices: list[int]) -> dict[int, np.ndarray]:
    fg, bg = [], []
    for k in slices:
        organ = mask[k] == LABEL
        rows = np.flatnonzero(organ.any(axis=1))
        r = int(rows[len(rows) // 2])
        cols = np.flatnonzero(organ[r])
        fg.append(np.array([[k, r, c] for c in range(cols[0] + 5, cols[-1] - 5)]))
        dil = ndimage.distance_transform_edt(~organ, sampling=SPACING[1:]) <= 5.0
        ring = dil & ~ndimage.binary_erosion(dil, border_value=1)
        bg.append(np.c_[np.full(int(ring.sum()), k), np.argwhere(ring)])
    return {LABEL: np.concatenate(fg), BACKGROUND: np.concatenate(bg)}


def dice_of(res, mask: np.ndarray) -> float:
    ref = mask == LABEL
    out = np.zeros(mask.shape, bool)
    out[tuple(slice(a, b) for a, b in res.bbox)] = res.labels == LABEL
    return 2.0 * (out & ref).sum() / (out.sum() + ref.sum())


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--no-alternatives", action="store_true", help="skip the slower alternative methods")
    args = ap.parse_args()
    print(f"cores {os.cpu_count()}, load average before {os.getloadavg()[0]:.2f}")
    (vol, mask), secs = timed(build_ct)
    print(f"CT {vol.shape} (k, j, i), spacing {SPACING} mm, built in {secs:.1f} s")
    ks = np.flatnonzero((mask == LABEL).any(axis=(1, 2)))
    mid = int(ks[len(ks) // 2])
    slices = [mid - 40, mid, mid + 40]
    seeds = stroke_seeds(mask, slices)

    print("\nGrow from seeds (SimpleITK marker watershed, default settings)")
    grower = SeedGrower(vol, SPACING)
    res = grower.grow(seeds)
    print(f"  first grow            {res.seconds:6.2f} s  box {res.bbox}  shrink {res.shrink}  "
          f"Dice {dice_of(res, mask):.3f}")
    more = dict(seeds)
    more[LABEL] = np.concatenate([seeds[LABEL], stroke_seeds(mask, [mid + 20])[LABEL]])
    res2 = grower.grow(more)
    print(f"  + stroke inside box   {res2.seconds:6.2f} s  cache reused {res2.reused_cache}  "
          f"Dice {dice_of(res2, mask):.3f}")
    more[BACKGROUND] = np.concatenate([more[BACKGROUND], stroke_seeds(mask, [mid + 45])[BACKGROUND]])
    res3 = grower.grow(more)
    print(f"  + stroke beyond seeds {res3.seconds:6.2f} s  cache reused {res3.reused_cache}  "
          f"Dice {dice_of(res3, mask):.3f}")
    t_cancel = []
    start = time.perf_counter()
    grower.clear_cache()
    try:
        grower.grow(more, cancel=lambda: (t_cancel.append(time.perf_counter()) or len(t_cancel) > 4))
    except GrowCancelled as exc:
        print(f"  cancel (5th poll)     {time.perf_counter() - start:6.2f} s  -> {type(exc).__name__}")

    print("\nClick to segment (default tolerance) at the organ's centre")
    for label, what in ((LABEL, "organ 2 (60 HU in 40 HU tissue, noise 25: CNR 0.8)"),
                        (1, "organ 1 (90 HU: CNR 2)")):
        kk = np.flatnonzero((mask == label).any(axis=(1, 2)))
        km = int(kk[len(kk) // 2])
        centre = (km, *[int(np.median(a)) for a in np.nonzero(mask[km] == label)])
        for mode in ("2d", "3d"):
            t0 = time.perf_counter()
            try:
                box, sel = region_from_click(vol, centre, SPACING, mode=mode)
            except ClickError as exc:
                print(f"  {mode} {what}: {time.perf_counter() - t0:6.3f} s  refused: {str(exc)[:60]}...")
                continue
            secs = time.perf_counter() - t0
            ref = (mask[tuple(slice(a, b) for a, b in box)] == label)
            total = (mask[km] == label).sum() if mode == "2d" else (mask == label).sum()
            print(f"  {mode} {what}: {secs:6.3f} s  box {tuple(b - a for a, b in box)}  "
                  f"Dice {2 * (sel & ref).sum() / (sel.sum() + total):.3f}")
    centre = (mid, *[int(np.median(a)) for a in np.nonzero(mask[mid] == LABEL)])

    r = 19
    yy, xx = np.ogrid[-r:r + 1, -r:r + 1]
    foot = yy ** 2 + xx ** 2 <= r * r
    c = centre
    vals = vol[c[0], c[1] - r:c[1] + r + 1, c[2] - r:c[2] + r + 1]
    _, secs = timed(lambda: [smart_footprint(vals, foot, (r, r), 0.4) for _ in range(100)])
    print(f"\nSmart brush dab (30 mm, {foot.sum()} voxels)  {secs / 100 * 1000:6.2f} ms")
    ang = np.linspace(0, 2 * np.pi, 400)
    pts = [(256 + 150 * np.sin(a), 256 + 200 * np.cos(a)) for a in ang]
    _, secs = timed(lambda: polygon_selection((512, 512), pts))
    print(f"Lasso, 400-point outline on a 512 x 512 slice  {secs * 1000:6.2f} ms")

    if args.no_alternatives:
        return
    print("\nMethod comparison, same seeds (first grow incl. cache; then a stroke inside the box)")
    print(f"  {'method':<36}{'first s':>8}{'stroke s':>10}{'Dice':>7}")
    configs = [("sitk watershed, grid <= 1M (chosen)", dict()),
               ("sitk watershed, grid <= 2M", dict(work_voxels=2_000_000)),
               ("sitk watershed, full resolution", dict(work_voxels=None)),
               ("skimage watershed, grid <= 1M", dict(method="skimage_watershed")),
               ("random walker, grid <= 250k", dict(method="random_walker", work_voxels=250_000))]
    for name, kw in configs:
        g = SeedGrower(vol, SPACING, **kw)
        a = g.grow(seeds)
        b = g.grow(more)
        print(f"  {name:<36}{a.seconds:8.2f}{b.seconds:10.2f}{dice_of(b, mask):7.3f}", flush=True)
    print("  GrowCut: no maintained Python library in the environment (itk-growcut needs the full ITK "
          "wheels); not measured")
    print(f"\nload average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
