"""3D surface view: how long the label meshes take on a full-size CT mask (CPU only).

A 300 x 512 x 512 mask (spacing 1 x 0.8 x 0.8 mm) with the synthetic CT's organ, second
organ and spine (bench/synthetic_ct.py's shapes) plus a whole-body outline as the worst
case. Prints, per label: voxels, reduction step, vertices, faces, build seconds; then the
full rebuild through :class:`SurfaceMeshes` and an incremental update after a brush stroke
(copy on the GUI thread, build in the worker, apply), i.e. what the 3D view does.

Usage: nice -n 15 .venv/bin/python bench/surface_bench.py [--threads N]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_mask(n_slices: int = 300):
    import numpy as np

    from bench.synthetic_ct import SHAPE, SPACING

    shape = (n_slices, SHAPE[1], SHAPE[2])
    k, j, i = np.ogrid[: shape[0], : shape[1], : shape[2]]
    k = k + (SHAPE[0] - n_slices) // 2  # the middle slices of the synthetic CT
    mask = np.zeros(shape, np.uint8)
    body = ((j - 256) / 200.0) ** 2 + ((i - 256) / 230.0) ** 2 < 1.0
    mask[np.broadcast_to(body, shape)] = 4
    mask[((k - 200) / 120.0) ** 2 + ((j - 220) / 80.0) ** 2 + ((i - 180) / 70.0) ** 2 < 1.0] = 1
    mask[((k - 180) / 90.0) ** 2 + ((j - 260) / 50.0) ** 2 + ((i - 330) / 45.0) ** 2 < 1.0] = 2
    mask[np.broadcast_to(((j - 380) / 25.0) ** 2 + ((i - 256) / 25.0) ** 2 < 1.0, shape)] = 3
    return mask, SPACING


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=300)
    ap.parse_args()
    import numpy as np

    from desktop_app.state.geometry import bbox_of
    from desktop_app.state.surface_mesh import MAX_GRID_VOXELS, MAX_VERTICES, SurfaceMeshes, label_bboxes, label_mesh
    from unet_engine.volume import Volume

    mask, spacing = make_mask()
    vol = Volume(np.zeros((1, 1, 1), np.int16), spacing=spacing)  # geometry only
    affine = vol.affine
    names = {1: "organ (liver-like)", 2: "second organ", 3: "spine (full length)", 4: "body outline"}
    print(f"mask {mask.shape} uint8, spacing {spacing} mm, {os.cpu_count()} CPUs, "
          f"budget {MAX_GRID_VOXELS:,} grid cells / {MAX_VERTICES:,} vertices per label")
    t0 = time.perf_counter()
    boxes = label_bboxes(mask)
    print(f"label bboxes (one find_objects pass): {time.perf_counter() - t0:.2f} s")
    print(f"{'label':22s} {'voxels':>11s} {'bbox':>16s} {'step':>4s} {'vertices':>9s} {'faces':>9s} {'seconds':>7s}")
    for v, box in boxes.items():
        t0 = time.perf_counter()
        m = label_mesh(mask, v, affine, box)
        dt = time.perf_counter() - t0
        n = int((mask[tuple(slice(a, b) for a, b in box)] == v).sum())
        size = "x".join(str(b - a) for a, b in box)
        print(f"{names[v]:22s} {n:11,d} {size:>16s} {m.step:4d} {m.n_vertices:9,d} {m.n_faces:9,d} {dt:7.2f}")

    surf = SurfaceMeshes()
    t0 = time.perf_counter()
    job = surf.plan(mask, affine)
    t1 = time.perf_counter()
    upd = job.run()
    t2 = time.perf_counter()
    surf.apply(upd)
    t3 = time.perf_counter()
    print(f"full rebuild, 4 labels: copy {t1 - t0:.2f} s (GUI thread), build {t2 - t1:.2f} s (worker), "
          f"apply {t3 - t2:.3f} s")

    # a brush stroke (sphere, radius 8 voxels) into the second organ: only it is rebuilt
    k, j, i = np.ogrid[:16, :16, :16]
    ball = (k - 7.5) ** 2 + (j - 7.5) ** 2 + (i - 7.5) ** 2 < 64
    k0, j0, i0 = 150, 300, 350
    region = mask[k0:k0 + 16, j0:j0 + 16, i0:i0 + 16]
    region[ball] = 2
    stroke = bbox_of(ball, (k0, j0, i0))
    surf.invalidate(stroke)
    t0 = time.perf_counter()
    job = surf.plan(mask, affine)
    t1 = time.perf_counter()
    upd = job.run()
    t2 = time.perf_counter()
    changed = surf.apply(upd)
    print(f"brush stroke in label 2: labels rebuilt {sorted(job.values)} (changed {sorted(changed)}), crop "
          f"{'x'.join(str(n) for n in job.crop.shape)}, copy {t1 - t0:.3f} s, build {t2 - t1:.2f} s")
    # erase a slab of the spine: the spine and the body outline around it are rebuilt
    mask[100:110, 355:405, 231:281][mask[100:110, 355:405, 231:281] == 3] = 4
    surf.invalidate(((100, 110), (355, 405), (231, 281)))
    t0 = time.perf_counter()
    job = surf.plan(mask, affine)
    upd = job.run()
    surf.apply(upd)
    print(f"spine slab relabelled as body: labels rebuilt {sorted(job.values)}, "
          f"{time.perf_counter() - t0:.2f} s in all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
