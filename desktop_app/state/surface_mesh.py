"""Surface meshes of the labels, for the 3D view (no Qt).

Each label value gets its own triangle mesh, built with ``skimage.measure.marching_cubes``
on the label's bounding box only, in patient millimetres (LPS, through the scan's spacing,
direction and origin, so the surface is the right way round and the right size).

Speed and size: a big label is first reduced by an integer ``step`` (the mean of
``step**3`` voxel blocks, which also softens the voxel staircase) so that the grid handed
to marching cubes stays under ``max_grid_voxels``; if the mesh still has more than
``max_vertices`` vertices it is rebuilt coarser. A Gaussian blur of the label's 0/1
field (``smooth_sigma`` grid cells), clamped so that no cell changes side of the 0.5
level, makes the surface look like anatomy, not Lego, without losing thin parts or
moving the surface more than half a cell from the voxels' edges.

Incremental updates (:class:`SurfaceMeshes`): the document announces each edit with the
bounding box it touched; only the labels present in that box, or whose cached bbox
meets it, are rebuilt, from a copy of the region holding their old and new voxels.
The plan / run / apply split lets the GUI thread copy the region (plan), a worker build
the meshes (:meth:`MeshJob.run`), and the GUI thread store them (apply), dropping
results of a scan or mask that has since been replaced.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import cast

import numpy as np
from scipy import ndimage
from skimage import measure

from desktop_app.state.geometry import BBox, bbox_empty, bbox_union, clip_bbox, to_slices
from unet_engine.volume import int3

#: The grid marching cubes sees per label stays under this many cells (a 512 x 512 x 300
#: body outline is reduced by 3 along each axis; a spleen or a hippocampus is not reduced).
MAX_GRID_VOXELS = 4_000_000
#: A label's mesh is rebuilt coarser until it has at most this many vertices.
MAX_VERTICES = 300_000
#: Gaussian blur (in grid cells) of the 0/1 label field before marching cubes.
SMOOTH_SIGMA = 0.8
_MAX_DIRTY_BOXES = 64


@dataclass
class LabelMesh:
    """The surface of one label, in LPS millimetres."""

    value: int
    vertices: np.ndarray  # (n, 3) float32, LPS mm
    faces: np.ndarray  # (m, 3) uint32, counter-clockwise seen from outside
    normals: np.ndarray  # (n, 3) float32, unit, pointing out of the label
    bbox: BBox  # the label's voxel bbox (end exclusive)
    step: int  # voxels per grid cell along each axis (1: full resolution)

    @property
    def n_vertices(self) -> int:
        return int(self.vertices.shape[0])

    @property
    def n_faces(self) -> int:
        return int(self.faces.shape[0])

    def bounds_mm(self) -> tuple[np.ndarray, np.ndarray]:
        """(min xyz, max xyz) of the vertices, in mm."""
        return self.vertices.min(axis=0), self.vertices.max(axis=0)


def choose_step(shape: tuple[int, ...], max_grid_voxels: int = MAX_GRID_VOXELS) -> int:
    """Smallest integer reduction keeping ``prod(ceil(shape / step))`` under the budget."""
    step = max(1, math.ceil((float(np.prod(shape)) / max(1, max_grid_voxels)) ** (1.0 / 3.0)))
    while np.prod([math.ceil(n / step) for n in shape]) > max_grid_voxels:
        step += 1
    return step


def label_bboxes(mask: np.ndarray, values: set[int] | None = None,
                 origin: tuple[int, int, int] = (0, 0, 0)) -> dict[int, BBox]:
    """Voxel bbox of each nonzero label value of ``mask`` (one pass), shifted by ``origin``;
    only ``values`` when given (values absent from the mask are left out)."""
    if mask.size == 0 or not mask.any():
        return {}
    arr = mask if mask.dtype.kind in "iu" else mask.astype(np.int64)
    if arr.dtype.kind == "i" and arr.min() < 0:
        arr = np.where(arr < 0, 0, arr)
    if values is not None:
        wanted = [v for v in values if v > 0]
        if not wanted:
            return {}
        objects = ndimage.find_objects(arr, max_label=max(wanted))
    else:
        objects = ndimage.find_objects(arr)
    out: dict[int, BBox] = {}
    for index, slices in enumerate(objects):
        value = index + 1
        if slices is None or (values is not None and value not in values):
            continue
        out[value] = cast(BBox, tuple((s.start + o, s.stop + o) for s, o in zip(slices, origin)))
    return out


def _reduce(sub: np.ndarray, step: int) -> np.ndarray:
    """Mean of ``step**3`` blocks of a 0/1 array (padded with zeros to a multiple of step)."""
    if step == 1:
        return sub.astype(np.float32)
    pad = [(0, (-n) % step) for n in sub.shape]
    a = np.pad(sub.view(np.uint8), pad)
    nk, nj, ni = (n // step for n in a.shape)
    total = a.reshape(nk, step, nj, step, ni, step).sum(axis=(1, 3, 5), dtype=np.uint32)
    return total.astype(np.float32) * np.float32(1.0 / step**3)


def label_mesh(
    mask: np.ndarray,
    value: int,
    affine: np.ndarray,
    bbox: BBox | None = None,
    origin: tuple[int, int, int] = (0, 0, 0),
    max_grid_voxels: int = MAX_GRID_VOXELS,
    max_vertices: int = MAX_VERTICES,
    smooth_sigma: float = SMOOTH_SIGMA,
) -> LabelMesh | None:
    """The surface of label ``value`` of ``mask`` (None when it has no voxels, or too few
    to make a surface at the reduction needed).

    ``mask`` may be a crop of the document's mask whose voxel ``[0, 0, 0]`` is voxel
    ``origin`` of the scan; ``bbox`` (scan voxels) is the label's bbox when already known,
    and must hold all its voxels. ``affine`` maps scan ``(k, j, i, 1)`` to LPS mm
    (``Volume.affine``).
    """
    if bbox is None:
        bbox = label_bboxes(mask, {int(value)}, origin).get(int(value))
        if bbox is None:
            return None
    local = tuple(slice(a - o, b - o) for (a, b), o in zip(bbox, origin))
    sub = mask[local] == value
    if not sub.any():
        return None
    m = np.asarray(affine, dtype=np.float64)[:3, :3]
    t = np.asarray(affine, dtype=np.float64)[:3, 3]
    step = choose_step(sub.shape, max_grid_voxels)
    while True:
        grid = np.pad(_reduce(sub, step), 2)
        pad = 2
        inside = grid >= 0.5
        if not inside.any():
            return None  # thinner than half a grid cell everywhere: no surface at this step
        if smooth_sigma > 0:
            # blur, but keep every cell on its side of the 0.5 level: the surface is smooth
            # yet still holds exactly the (reduced) label's cells, thin parts included
            blur = ndimage.gaussian_filter(grid, smooth_sigma, mode="constant")
            grid = np.where(inside, np.maximum(blur, 0.5 + 1e-3), np.minimum(blur, 0.5 - 1e-3))
        verts, faces, normals, _ = measure.marching_cubes(grid, level=0.5, allow_degenerate=False)
        if len(verts) <= max_vertices or step > max(sub.shape):
            break
        step = max(step + 1, math.ceil(step * math.sqrt(len(verts) / max_vertices)))
    if len(faces) == 0:
        return None
    # grid cell g holds voxels [g*step, (g+1)*step) of the bbox: its centre is g*step + (step-1)/2
    kji = (verts - pad) * step + (step - 1) / 2.0 + np.asarray([a for a, _ in bbox], dtype=np.float64)
    xyz = kji @ m.T + t
    # normals are gradients: they map by the inverse transpose
    n_world = normals.astype(np.float64) @ np.linalg.inv(m)
    n_world /= np.maximum(np.linalg.norm(n_world, axis=1, keepdims=True), 1e-12)
    faces = faces.astype(np.uint32)
    # marching_cubes winds faces clockwise seen from outside in index space; a mirroring
    # affine (det < 0, e.g. LPS with k->z, j->y, i->x) flips the winding once more
    if np.linalg.det(m) > 0:
        faces = faces[:, ::-1]
    return LabelMesh(int(value), xyz.astype(np.float32), np.ascontiguousarray(faces),
                     n_world.astype(np.float32), cast(BBox, tuple((int(a), int(b)) for a, b in bbox)), int(step))


def build_meshes(mask: np.ndarray, affine: np.ndarray, values: set[int] | None = None,
                 origin: tuple[int, int, int] = (0, 0, 0), **params) -> dict[int, LabelMesh | None]:
    """Meshes of ``values`` (all labels present when None) of ``mask`` (a crop at ``origin``);
    a requested value absent from ``mask`` maps to None."""
    boxes = label_bboxes(mask, values, origin)
    out: dict[int, LabelMesh | None] = {v: None for v in (values or ())}
    for value, box in boxes.items():
        out[value] = label_mesh(mask, value, affine, box, origin, **params)
    return out


# ----- incremental updates -------------------------------------------------------------------
@dataclass
class MeshJob:
    """What a worker needs to rebuild some labels' meshes (all arrays are copies)."""

    epoch: int
    crop: np.ndarray
    origin: tuple[int, int, int]
    affine: np.ndarray
    values: set[int] | None  # None: every label in ``crop`` (a full rebuild)
    params: dict = field(default_factory=dict)

    @property
    def full(self) -> bool:
        return self.values is None

    def run(self) -> "MeshUpdate":
        """Build the meshes (pure; runs in a worker thread)."""
        t0 = time.perf_counter()
        boxes = label_bboxes(self.crop, self.values, self.origin)
        meshes = {v: label_mesh(self.crop, v, self.affine, box, self.origin, **self.params) for v, box in boxes.items()}
        return MeshUpdate(self.epoch, self.values, boxes, meshes, time.perf_counter() - t0)


@dataclass
class MeshUpdate:
    """A worker's answer: new bboxes and meshes for the labels of its job."""

    epoch: int
    values: set[int] | None  # the job's values (None: full rebuild)
    bboxes: dict[int, BBox]  # labels still present
    meshes: dict[int, LabelMesh | None]
    seconds: float


class SurfaceMeshes:
    """Per-label meshes of one document's mask, kept up to date incrementally.

    GUI-thread use: :meth:`reset` on a new scan or a replaced mask, :meth:`invalidate`
    with each ``mask_changed`` bbox, :meth:`plan` when it is time to rebuild (returns a
    :class:`MeshJob` to run anywhere, or None), :meth:`apply` with the job's result (returns
    the label values whose mesh changed, or None for a stale result, which is dropped).
    """

    def __init__(self, **params) -> None:
        self.params = params  # label_mesh keywords: max_grid_voxels, max_vertices, smooth_sigma
        self.meshes: dict[int, LabelMesh] = {}
        self.bboxes: dict[int, BBox] = {}  # every label with voxels (a tiny one may have no mesh)
        self.epoch = 0
        self._full = True
        self._dirty: list[BBox] = []  # the edits' boxes since the last plan

    @property
    def pending(self) -> bool:
        """True when the mask changed since the last plan."""
        return self._full or bool(self._dirty)

    def reset(self) -> None:
        """A new scan or a whole new mask: forget everything; results in flight are stale."""
        self.epoch += 1
        self.meshes.clear()
        self.bboxes.clear()
        self._full = True
        self._dirty = []

    def invalidate(self, bbox: BBox | None) -> None:
        """Voxels inside ``bbox`` changed (None: anywhere)."""
        if bbox is None:
            self._full = True
            return
        box = cast(BBox, tuple((int(a), int(b)) for a, b in bbox))
        if bbox_empty(box):
            return
        self._dirty.append(box)
        if len(self._dirty) > _MAX_DIRTY_BOXES:  # a long burst of dabs: one box is enough
            union: BBox | None = None
            for b in self._dirty:
                union = bbox_union(union, b)
            assert union is not None  # a union of non-empty boxes
            self._dirty = [union]

    def plan(self, mask: np.ndarray | None, affine: np.ndarray) -> MeshJob | None:
        """The job covering every change since the last plan (None: nothing to do)."""
        if mask is None or mask.ndim != 3:
            self._full, self._dirty = False, []
            return None
        affine = np.array(affine, dtype=np.float64)
        if self._full:
            self._full, self._dirty = False, []
            return MeshJob(self.epoch, mask.copy(), (0, 0, 0), affine, None, dict(self.params))
        boxes = [b for b in (clip_bbox(d, mask.shape) for d in self._dirty) if b is not None]
        self._dirty = []
        values: set[int] = set()
        area: BBox | None = None
        for box in boxes:
            values |= {int(v) for v in np.unique(mask[tuple(slice(a, b) for a, b in box)]) if v != 0}
            values |= {v for v, old in self.bboxes.items() if _meets(old, box)}
            area = bbox_union(area, box)
        if not values or area is None:
            return None
        # the crop holds each affected label's old voxels (its cached bbox) and new ones (the edits)
        for v in values:
            area = bbox_union(area, self.bboxes.get(v))
        assert area is not None  # a union with a non-empty box
        crop = mask[to_slices(area)].copy()
        return MeshJob(self.epoch, crop, int3(a for a, _ in area), affine, values, dict(self.params))

    def apply(self, update: MeshUpdate) -> set[int] | None:
        """Store a job's result; the values whose mesh changed, or None when it is stale."""
        if update.epoch != self.epoch:
            return None
        changed: set[int] = set()
        if update.values is None:  # full rebuild
            changed |= set(self.meshes)
            self.meshes.clear()
            self.bboxes.clear()
            values = set(update.bboxes)
        else:
            values = set(update.values)
        for v in values:
            box = update.bboxes.get(v)
            mesh = update.meshes.get(v)
            if box is None:
                self.bboxes.pop(v, None)
            else:
                self.bboxes[v] = box
            if mesh is None:
                if self.meshes.pop(v, None) is not None:
                    changed.add(v)
            else:
                self.meshes[v] = mesh
                changed.add(v)
        return changed

    def bounds_mm(self, values: set[int] | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        """(min xyz, max xyz) over the meshes of ``values`` (all when None), or None."""
        boxes = [m.bounds_mm() for v, m in self.meshes.items() if values is None or v in values]
        if not boxes:
            return None
        return np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0)


def _meets(a: BBox, b: BBox) -> bool:
    return all(a0 < b1 and b0 < a1 for (a0, a1), (b0, b1) in zip(a, b))
