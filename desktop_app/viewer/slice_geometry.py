"""Which array axis each anatomical view shows, and how its slice is laid out on screen (no Qt).

The three views are defined from the scan's ``direction`` (never from the file format):
the array axis whose world direction is most aligned with world *z* is the axial view's
normal, *y* the coronal's, *x* the sagittal's (one axis each, chosen jointly so an
oblique-ish scan still gets three distinct views).

Screen layout follows the radiological convention:

* axial: patient left on screen right, anterior up;
* coronal: patient left on screen right, superior up;
* sagittal: anterior on screen left (posterior right), superior up.

A slice is returned as a *view* into the volume array (transposes and flips are strided
views, no copy). Display coordinates are ``(row, col)`` with row 0 at the top; one display
pixel is ``row_spacing x col_spacing`` millimetres. Voxel coordinates handed to tools are
``(axis, slice_index, row, col)`` in *array* order (see :mod:`desktop_app.state.geometry`):
continuous indices where voxel ``n`` is centred on ``n`` (use ``round`` for the voxel).
World coordinates are LPS millimetres, as everywhere in SegLoop.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations

import numpy as np

from desktop_app.state.geometry import plane_axes
from unet_engine.volume import int3

PLANES: tuple[str, ...] = ("axial", "coronal", "sagittal")

#: World axis (LPS x=0, y=1, z=2) each plane looks along.
_PLANE_WORLD_NORMAL = {"axial": 2, "coronal": 1, "sagittal": 0}
#: For each plane: (world axis shown left->right, +1 if it increases to the right),
#: (world axis shown top->bottom, +1 if it increases downwards). LPS: +x = patient left,
#: +y = posterior, +z = superior.
_PLANE_SCREEN = {
    "axial": ((0, +1), (1, +1)),  # L on the right, P at the bottom (A up)
    "coronal": ((0, +1), (2, -1)),  # L on the right, I at the bottom (S up)
    "sagittal": ((1, +1), (2, -1)),  # P on the right (A left), S up
}
#: Patient direction letter of +/- each LPS world axis.
_LETTERS = (("R", "L"), ("A", "P"), ("I", "S"))


def world_axis_assignment(direction: np.ndarray) -> tuple[int, int, int]:
    """Array axis (0=k, 1=j, 2=i) best aligned with world x, y and z respectively.

    ``direction`` columns are the LPS unit vectors of array axes k, j, i. The permutation
    maximising the summed ``|cos|`` wins, so each world axis gets a different array axis.
    """
    d = np.abs(np.asarray(direction, dtype=np.float64).reshape(3, 3))
    best: tuple[int, int, int] = (2, 1, 0)
    best_score = -1.0
    for perm in permutations(range(3)):  # perm[w] = array axis for world axis w
        score = sum(d[w, perm[w]] for w in range(3))
        if score > best_score + 1e-9:
            best, best_score = int3(perm), score
    return best


def letter_for(vector: np.ndarray) -> str:
    """Patient-direction letter (L/R/A/P/S/I) of the dominant component of an LPS vector."""
    v = np.asarray(vector, dtype=np.float64)
    w = int(np.argmax(np.abs(v)))
    return _LETTERS[w][1 if v[w] > 0 else 0]


@dataclass(frozen=True)
class PlaneGeometry:
    """How one anatomical plane of a volume maps to a 2D display."""

    plane: str
    axis: int  # array axis held fixed (the view's normal)
    row_axis: int  # array axis shown along display rows (top -> bottom)
    col_axis: int  # array axis shown along display columns (left -> right)
    row_flip: bool  # True when array index decreases downwards
    col_flip: bool  # True when array index decreases to the right
    n_slices: int
    n_rows: int
    n_cols: int
    row_spacing: float  # mm per display row
    col_spacing: float  # mm per display column
    letters: dict  # {"left", "right", "top", "bottom"} -> patient letter

    # ----- slices --------------------------------------------------------------------------
    def extract(self, array: np.ndarray, index: int) -> np.ndarray:
        """The 2D display slice (a strided view, channels kept last) at ``index``."""
        sl: list = [slice(None)] * 3
        sl[self.axis] = int(index)
        view = array[tuple(sl)]
        if self.row_axis > self.col_axis:  # remaining axes come out in array order
            view = view.swapaxes(0, 1)
        return view[:: -1 if self.row_flip else 1, :: -1 if self.col_flip else 1]

    def extent_mm(self) -> tuple[float, float]:
        """Display ``(width, height)`` in mm: the ImageItem rect is ``(0, 0, w, h)``."""
        return self.n_cols * self.col_spacing, self.n_rows * self.row_spacing

    # ----- coordinates ---------------------------------------------------------------------
    def display_to_array(self, row: float, col: float) -> tuple[float, float]:
        """Continuous display pixel coords (0 = top/left edge) -> (row, col) array indices
        of :attr:`row_axis` / :attr:`col_axis` (voxel ``n`` centred on ``n``)."""
        r = row - 0.5
        c = col - 0.5
        if self.row_flip:
            r = (self.n_rows - 1) - r
        if self.col_flip:
            c = (self.n_cols - 1) - c
        return r, c

    def array_to_display(self, row_index: float, col_index: float) -> tuple[float, float]:
        """Array indices along (row_axis, col_axis) -> display pixel centre (row, col)."""
        r = (self.n_rows - 1) - row_index if self.row_flip else row_index
        c = (self.n_cols - 1) - col_index if self.col_flip else col_index
        return r + 0.5, c + 0.5

    def tool_point(self, slice_index: int, row: float, col: float) -> tuple[int, int, float, float]:
        """``(axis, slice_index, row, col)`` in :mod:`desktop_app.state.geometry`'s
        convention (row/col = the remaining array axes in increasing order) from display
        pixel coords."""
        r_idx, c_idx = self.display_to_array(row, col)
        a0, _a1 = plane_axes(self.axis)
        if self.row_axis == a0:
            return self.axis, int(slice_index), r_idx, c_idx
        return self.axis, int(slice_index), c_idx, r_idx

    def kji(self, slice_index: float, row: float, col: float) -> tuple[float, float, float]:
        """Continuous ``(k, j, i)`` of display pixel coords on slice ``slice_index``."""
        r_idx, c_idx = self.display_to_array(row, col)
        out = [0.0, 0.0, 0.0]
        out[self.axis], out[self.row_axis], out[self.col_axis] = float(slice_index), r_idx, c_idx
        return out[0], out[1], out[2]

    def crosshair_mm(self, kji: tuple[float, float, float]) -> tuple[float, float]:
        """Display position ``(x_mm, y_mm)`` of voxel ``kji``'s centre on this plane."""
        r, c = self.array_to_display(kji[self.row_axis], kji[self.col_axis])
        return c * self.col_spacing, r * self.row_spacing

    def slice_in_bbox(self, slice_index: int, bbox) -> bool:
        """Whether ``bbox`` (``((k0,k1),(j0,j1),(i0,i1))``, end exclusive; None = all)
        touches slice ``slice_index`` of this plane."""
        if bbox is None:
            return True
        lo, hi = bbox[self.axis]
        return lo <= slice_index < hi


def plane_geometry(
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    direction: np.ndarray,
    plane: str,
) -> PlaneGeometry:
    """Layout of ``plane`` ("axial", "coronal" or "sagittal") for a volume's grid."""
    if plane not in _PLANE_SCREEN:
        raise ValueError(f"plane must be one of {PLANES}, got {plane!r}")
    d = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    assign = world_axis_assignment(d)  # world axis -> array axis
    axis = assign[_PLANE_WORLD_NORMAL[plane]]
    (w_col, s_col), (w_row, s_row) = _PLANE_SCREEN[plane]
    col_axis, row_axis = assign[w_col], assign[w_row]
    # flip when the array axis runs against the wanted screen direction
    col_flip = bool(np.sign(d[w_col, col_axis]) * s_col < 0)
    row_flip = bool(np.sign(d[w_row, row_axis]) * s_row < 0)
    v_right = d[:, col_axis] * (-1.0 if col_flip else 1.0)
    v_down = d[:, row_axis] * (-1.0 if row_flip else 1.0)
    letters = {
        "right": letter_for(v_right),
        "left": letter_for(-v_right),
        "bottom": letter_for(v_down),
        "top": letter_for(-v_down),
    }
    return PlaneGeometry(
        plane=plane,
        axis=int(axis),
        row_axis=int(row_axis),
        col_axis=int(col_axis),
        row_flip=row_flip,
        col_flip=col_flip,
        n_slices=int(shape[axis]),
        n_rows=int(shape[row_axis]),
        n_cols=int(shape[col_axis]),
        row_spacing=float(spacing[row_axis]),
        col_spacing=float(spacing[col_axis]),
        letters=letters,
    )


def volume_planes(volume) -> dict[str, PlaneGeometry]:
    """The three :class:`PlaneGeometry` of a :class:`~unet_engine.volume.Volume`."""
    return {p: plane_geometry(volume.shape, volume.spacing, volume.direction, p) for p in PLANES}
