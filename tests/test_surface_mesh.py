"""Label surface meshes for the 3D view (desktop_app.state.surface_mesh, no Qt)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from desktop_app.state.surface_mesh import (
    MeshJob,
    SurfaceMeshes,
    build_meshes,
    choose_step,
    label_bboxes,
    label_mesh,
)
from unet_engine.io.volume_io import read_volume
from unet_engine.volume import Volume, identity_direction

HIPPO = Path(__file__).parent / "data" / "hippocampus"


def voxel_box_mm(vol: Volume, bbox) -> tuple[np.ndarray, np.ndarray]:
    """World (mm) box around the voxels of ``bbox`` (their outer edges)."""
    corners = np.array([(k, j, i) for k in (bbox[0][0] - 0.5, bbox[0][1] - 0.5)
                        for j in (bbox[1][0] - 0.5, bbox[1][1] - 0.5) for i in (bbox[2][0] - 0.5, bbox[2][1] - 0.5)])
    xyz = vol.voxel_to_world(corners)
    return xyz.min(axis=0), xyz.max(axis=0)


def outward_fractions(mesh, centre) -> tuple[float, float]:
    v = mesh.vertices.astype(np.float64)
    f = mesh.faces
    face_n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    faces_out = float(((v[f].mean(axis=1) - centre) * face_n).sum(axis=1).__gt__(0).mean())
    normals_out = float(((v - centre) * mesh.normals).sum(axis=1).__gt__(0).mean())
    return faces_out, normals_out


@pytest.fixture(scope="module")
def hippo():
    lab = read_volume(HIPPO / "labelsTr" / "hippocampus_003.nii.gz")
    return lab, lab.array.astype(np.uint8)


def test_real_label_mesh_spans_the_label_in_patient_mm(hippo):
    vol, mask = hippo
    assert not np.allclose(vol.direction, identity_direction())  # a real, non-default orientation
    boxes = label_bboxes(mask)
    assert set(boxes) == {1, 2}
    for value, box in boxes.items():
        mesh = label_mesh(mask, value, vol.affine)
        assert mesh is not None and mesh.step == 1 and mesh.bbox == box
        lo, hi = mesh.bounds_mm()
        want_lo, want_hi = voxel_box_mm(vol, box)
        # never outside the label's voxels, and within a voxel of its edges (smoothing
        # rounds the corners; the extreme slices are reached)
        assert np.all(lo >= want_lo - 1e-3) and np.all(hi <= want_hi + 1e-3)
        assert np.all(lo <= want_lo + 1.0) and np.all(hi >= want_hi - 1.0)
        # the mesh sits where the label is: its centre of mass in mm, through the affine
        centre = vol.voxel_to_world(np.argwhere(mask == value).mean(axis=0))
        assert np.linalg.norm(mesh.vertices.mean(axis=0) - centre) < 2.0
        faces_out, normals_out = outward_fractions(mesh, mesh.vertices.mean(axis=0))
        assert faces_out > 0.8 and normals_out > 0.8  # a curved, non-convex label: mostly outward


@pytest.mark.parametrize("direction", [identity_direction(), np.eye(3),
                                       np.array([[0.0, 0.6, -0.8], [0.0, 0.8, 0.6], [1.0, 0.0, 0.0]])])
def test_orientation_spacing_and_winding(direction):
    """Anisotropic spacing, a mirroring and an oblique direction: the sphere lands where
    its voxels are in mm, the right size, faces counter-clockwise seen from outside."""
    shape = (30, 40, 50)
    k, j, i = np.ogrid[: shape[0], : shape[1], : shape[2]]
    spacing = (2.5, 0.8, 0.6)
    centre_kji = np.array([12.0, 25.0, 18.0])
    r_mm = 9.0
    d2 = ((k - centre_kji[0]) * spacing[0]) ** 2 + ((j - centre_kji[1]) * spacing[1]) ** 2 \
        + ((i - centre_kji[2]) * spacing[2]) ** 2
    mask = (d2 < r_mm**2).astype(np.uint8) * 3
    vol = Volume(np.zeros(shape, np.float32), spacing, (-40.0, 12.0, 7.5), direction)
    mesh = build_meshes(mask, vol.affine)[3]
    centre = vol.voxel_to_world(centre_kji)
    assert np.linalg.norm(mesh.vertices.mean(axis=0) - centre) < 0.5
    radii = np.linalg.norm(mesh.vertices - centre, axis=1)
    assert abs(np.median(radii) - r_mm) < 0.6 * max(spacing)
    assert outward_fractions(mesh, centre) == (1.0, 1.0)
    np.testing.assert_allclose(np.linalg.norm(mesh.normals, axis=1), 1.0, atol=1e-4)


def test_thin_and_tiny_labels_keep_a_surface():
    mask = np.zeros((20, 20, 20), np.uint8)
    mask[10, 10, 10] = 1  # one voxel
    mask[2:18, 5, 5] = 2  # a one-voxel-thick line
    meshes = build_meshes(mask, np.eye(4))
    assert meshes[1] is not None and meshes[2] is not None
    lo, hi = meshes[2].bounds_mm()
    assert lo[0] >= 1.5 - 1e-3 and hi[0] <= 17.5 + 1e-3 and hi[0] - lo[0] > 14


def test_big_label_is_reduced_to_the_budgets():
    mask = np.zeros((120, 120, 120), np.uint8)
    mask[5:115, 10:110, 8:112] = 1
    assert choose_step(mask.shape, 100_000) == 3
    mesh = label_mesh(mask, 1, np.eye(4), max_grid_voxels=100_000)
    assert mesh.step == 3
    lo, hi = mesh.bounds_mm()
    assert np.all(np.abs(lo - np.array([4.5, 9.5, 7.5])) <= 1.5 + 1e-3)
    assert np.all(np.abs(hi - np.array([114.5, 109.5, 111.5])) <= 1.5 + 1e-3)
    small = label_mesh(mask, 1, np.eye(4), max_grid_voxels=100_000, max_vertices=2_000)
    assert small.n_vertices <= 2_000 and small.step > 3


def test_empty_and_absent_labels():
    mask = np.zeros((8, 8, 8), np.uint8)
    assert build_meshes(mask, np.eye(4)) == {}
    assert build_meshes(mask, np.eye(4), values={4}) == {4: None}
    assert label_mesh(mask, 1, np.eye(4)) is None


def _two_labels() -> np.ndarray:
    mask = np.zeros((40, 60, 60), np.uint8)
    mask[5:20, 5:25, 5:25] = 1
    mask[25:35, 35:55, 35:55] = 2
    return mask


def _rebuild(surf: SurfaceMeshes, mask: np.ndarray, affine: np.ndarray) -> MeshJob:
    job = surf.plan(mask, affine)
    assert job is not None
    assert surf.apply(job.run()) is not None
    return job


def test_incremental_update_rebuilds_only_the_labels_touched():
    mask = _two_labels()
    affine = Volume(np.zeros(mask.shape, np.float32), (2.0, 0.7, 0.7)).affine
    surf = SurfaceMeshes()
    assert surf.pending
    job = _rebuild(surf, mask, affine)
    assert job.full and set(surf.meshes) == {1, 2} and not surf.pending
    assert surf.plan(mask, affine) is None  # nothing changed
    before2 = surf.meshes[2]

    # grow label 1 (a brush stroke away from label 2)
    mask[18:24, 10:15, 10:15] = 1
    surf.invalidate(((18, 24), (10, 15), (10, 15)))
    job = _rebuild(surf, mask, affine)
    assert job.values == {1} and job.crop.size < mask.size
    assert surf.meshes[2] is before2  # untouched
    assert surf.bboxes[1] == ((5, 24), (5, 25), (5, 25))
    fresh = label_mesh(mask, 1, affine)
    np.testing.assert_allclose(surf.meshes[1].vertices, fresh.vertices, atol=1e-4)

    # shrink label 1 from inside its bbox: the crop holds its old extent, the bbox shrinks
    mask[18:24] = 0
    surf.invalidate(((18, 24), (0, 60), (0, 60)))
    job = _rebuild(surf, mask, affine)
    assert job.values == {1}
    assert surf.bboxes[1] == ((5, 18), (5, 25), (5, 25))

    # erase label 2 entirely: its mesh goes
    mask[mask == 2] = 0
    surf.invalidate(((25, 35), (35, 55), (35, 55)))
    job = _rebuild(surf, mask, affine)
    assert job.values == {2} and 2 not in surf.meshes and 2 not in surf.bboxes and 1 in surf.meshes

    # changes accumulate until the next plan; a whole-mask change means a full rebuild
    mask[30:32, 40:42, 40:42] = 5
    surf.invalidate(((30, 32), (40, 42), (40, 42)))
    mask[0:2, 0:2, 0:2] = 6
    surf.invalidate(((0, 2), (0, 2), (0, 2)))
    job = _rebuild(surf, mask, affine)
    assert job.values == {5, 6} and set(surf.meshes) == {1, 5, 6}
    surf.invalidate(None)
    assert _rebuild(surf, mask, affine).full


def test_results_for_a_replaced_mask_are_dropped():
    mask = _two_labels()
    surf = SurfaceMeshes()
    job = surf.plan(mask, np.eye(4))
    surf.reset()  # a new scan opened while the job was running
    assert surf.apply(job.run()) is None and surf.meshes == {}
    assert surf.pending  # the new scan still needs its meshes
    _rebuild(surf, mask, np.eye(4))
    assert set(surf.meshes) == {1, 2}
