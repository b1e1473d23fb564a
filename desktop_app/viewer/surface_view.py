"""The 3D view: a shaded surface of each label, in patient millimetres, that you rotate.

Built on ``pyqtgraph.opengl`` (a ``GLViewWidget`` with one ``GLMeshItem`` per label): the
slice views already use pyqtgraph, so this adds no second toolkit and no render-window
event loop of its own. The meshes come from :mod:`desktop_app.state.surface_mesh`
(marching cubes per label, on its bounding box only).

* Colour, opacity and visibility follow the label table (a label hidden there, or with its
  ``mesh_visible`` off, is hidden here; below full opacity a surface is translucent and
  drawn after the opaque ones, which show through it); changing them redraws without rebuilding.
* After a mask edit the affected labels' meshes are rebuilt in a worker thread, debounced
  (one rebuild for a burst of brush dabs), one job at a time; a result for a scan or mask
  that has since been replaced is dropped. Nothing is built while the view is hidden (the
  changes are remembered and built when it shows).
* Mouse: left-drag rotates, wheel zooms, middle-drag (or Ctrl+left-drag) pans. A new scan
  resets the camera: the patient seen from the front (anterior), head up, the labels
  framed; ``reset_camera`` (View > Reset zoom) does it again.
* OpenGL is checked *before* any GL widget exists (:func:`opengl_unavailable_reason`):
  under ``QT_QPA_PLATFORM=offscreen`` (the tests), without a GL driver, or with
  ``SEGLOOP_NO_3D=1``, the view shows a plain message saying why instead of crashing.
  The GL widget itself is only created the first time the view is shown.
"""

from __future__ import annotations

import logging
import math
import os
from typing import TYPE_CHECKING

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets
from superqt.utils import WorkerBase

from desktop_app.state.document import Document
from desktop_app.state.surface_mesh import LabelMesh, MeshJob, MeshUpdate, SurfaceMeshes
from desktop_app.workers import WorkerManager
from desktop_app.signals import Connection, connect_all, disconnect_all

if TYPE_CHECKING:
    import pyqtgraph.opengl as gl  # imported when the view is first shown

log = logging.getLogger(__name__)

#: Milliseconds of quiet after a mask change before the meshes are rebuilt.
DEBOUNCE_MS = 200
#: Platforms with no OpenGL at all (a QOpenGLWidget there aborts or crashes).
_NO_GL_PLATFORMS = ("offscreen", "minimal", "vnc", "linuxfb")
_INFO_STYLE = ("color: rgb(220, 220, 220); font-size: 11px; background: rgba(0, 0, 0, 140); "
               "padding: 1px 4px;")
_GL_CHECK: dict[str, str | None] = {}


def opengl_unavailable_reason() -> str | None:
    """Why the 3D view cannot use OpenGL here, or None when it can (checked once).

    Looks at the Qt platform, then creates an OpenGL context on an offscreen surface and
    checks it is at least OpenGL 2.0 (shaders), without creating any widget.
    """
    if os.environ.get("SEGLOOP_NO_3D", "").strip() not in ("", "0"):
        return "turned off (SEGLOOP_NO_3D is set)"
    app = QtGui.QGuiApplication.instance()
    if app is None:
        return "no Qt application"
    platform = QtGui.QGuiApplication.platformName()
    if platform in _NO_GL_PLATFORMS:
        return f"the Qt platform '{platform}' has no OpenGL"
    if "gl" in _GL_CHECK:
        return _GL_CHECK["gl"]
    reason: str | None = None
    try:
        ctx = QtGui.QOpenGLContext()
        if not ctx.create():
            reason = "no OpenGL context could be created (no OpenGL driver?)"
        else:
            surface = QtGui.QOffscreenSurface()
            surface.setFormat(ctx.format())
            surface.create()
            if not surface.isValid() or not ctx.makeCurrent(surface):
                reason = "the OpenGL context could not be made current"
            else:
                fmt = ctx.format()
                if (fmt.majorVersion(), fmt.minorVersion()) < (2, 0):
                    reason = f"OpenGL {fmt.majorVersion()}.{fmt.minorVersion()} is too old (2.0 needed)"
                ctx.doneCurrent()
            surface.destroy()
    except Exception as exc:  # noqa: BLE001 - any GL driver failure means no 3D view  # pragma: no cover
        reason = f"OpenGL check failed: {exc}"
    if reason is None:
        try:
            import pyqtgraph.opengl  # noqa: F401  (PyOpenGL finds libGL)
        except Exception as exc:  # noqa: BLE001 - any GL driver failure means no 3D view  # pragma: no cover
            reason = f"pyqtgraph.opengl cannot load: {exc}"
    _GL_CHECK["gl"] = reason
    return reason


def _build(job: MeshJob) -> MeshUpdate:
    return job.run()


class SurfaceView(QtWidgets.QFrame):
    """The labels' surfaces in 3D (or a message saying why 3D is unavailable)."""

    meshes_updated = QtCore.Signal(object)  # set of label values whose mesh changed

    def __init__(self, document: Document, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("view_3d")
        self.setFrameShape(QtWidgets.QFrame.Shape.Box)
        self.setLineWidth(1)
        self.document = document
        self.surfaces = SurfaceMeshes()
        self.workers = WorkerManager(self)
        self.gl_view: gl.GLViewWidget | None = None  # once shown with OpenGL
        self.unavailable_reason: str | None = None
        self.items: dict[int, gl.GLMeshItem] = {}  # by label value
        self.builds = 0  # finished rebuilds (tests / bench)
        self.last_build_seconds = 0.0
        self._box_item = None
        self._gl_tried = False
        self._worker: WorkerBase | None = None
        self._reset_camera_pending = True
        self._debounce = QtCore.QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(DEBOUNCE_MS)
        self._debounce.timeout.connect(self._start_build)
        self._layout = QtWidgets.QVBoxLayout(self)
        self._layout.setContentsMargins(1, 1, 1, 1)
        self.placeholder = QtWidgets.QLabel("3D surface view", self)
        self.placeholder.setObjectName("view_3d_placeholder")
        self.placeholder.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setWordWrap(True)
        self.placeholder.setStyleSheet("color: rgb(200, 200, 200); background: black;")
        self._layout.addWidget(self.placeholder)
        self._connect_document()
        if document.image is not None:
            self._on_image_changed()

    # ----- document --------------------------------------------------------------------
    def _connections(self) -> list[Connection]:
        d = self.document
        return [(d.image_changed, self._on_image_changed), (d.mask_replaced, self._on_mask_replaced),
                (d.mask_changed, self._on_mask_changed), (d.labels.changed, self._on_labels_changed)]

    def _connect_document(self) -> None:
        connect_all(self._connections())

    def detach(self) -> None:
        """Stop listening to the document; a rebuild in flight is dropped when it ends."""
        disconnect_all(self._connections())
        self._debounce.stop()
        self.surfaces.reset()

    def _on_image_changed(self) -> None:
        self.surfaces.reset()
        self._reset_camera_pending = True
        self._clear_items()
        self._update_scan_box()
        self._schedule()

    def _on_mask_replaced(self) -> None:
        self.surfaces.reset()  # the mask_changed(None) that follows schedules the rebuild

    def _on_mask_changed(self, bbox) -> None:
        self.surfaces.invalidate(bbox)
        self._schedule()

    def _on_labels_changed(self) -> None:
        for value in self.items:
            self._style_item(value)

    # ----- building ----------------------------------------------------------------------
    @property
    def is_building(self) -> bool:
        return self._worker is not None

    def _schedule(self) -> None:
        if self.gl_view is not None and self.isVisible():
            self._debounce.start()

    def _start_build(self) -> None:
        if self._worker is not None or self.gl_view is None or not self.isVisible():
            return  # started again when the running build ends / the view shows
        doc = self.document
        if doc.image is None or doc.mask is None:
            return
        job = self.surfaces.plan(doc.mask, doc.image.affine)
        if job is None:
            return
        self._worker = self.workers.start(_build, job, description="Building 3D surfaces",
                                          on_result=self._on_built, on_error=self._on_build_error,
                                          on_finished=self._on_build_finished)

    def _on_built(self, update: MeshUpdate) -> None:
        changed = self.surfaces.apply(update)
        if changed is None:
            log.debug("3D surfaces for an older mask dropped")
            return
        self.builds += 1
        self.last_build_seconds = update.seconds
        if self.gl_view is not None:
            for value in changed:
                self._set_item(value, self.surfaces.meshes.get(value))
            if self._reset_camera_pending and (self.surfaces.meshes or update.values is None):
                self.reset_camera()
        self.meshes_updated.emit(changed)

    def _on_build_error(self, exc: BaseException) -> None:
        log.error("3D surface build failed", exc_info=(type(exc), exc, exc.__traceback__))

    def _on_build_finished(self) -> None:
        self._worker = None
        if self.surfaces.pending:
            self._schedule()

    def wait_idle(self, timeout_ms: int = 10_000) -> bool:
        """Process events until no rebuild is due or running (tests, screenshots)."""
        deadline = QtCore.QDeadlineTimer(timeout_ms)
        app = QtCore.QCoreApplication.instance()
        while (self._worker is not None or self._debounce.isActive()) and not deadline.hasExpired():
            if app is not None:
                app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 20)
            QtCore.QThread.msleep(2)
        return self._worker is None and not self._debounce.isActive()

    # ----- showing -----------------------------------------------------------------------
    def showEvent(self, event) -> None:
        super().showEvent(event)
        if not self._gl_tried:
            # once: adding the first GL widget makes Qt re-create the window, which shows
            # this view again (re-entering here)
            self._gl_tried = True
            self._create_gl_view()
        if self.gl_view is not None and self.surfaces.pending:
            self._debounce.start(0)

    def _create_gl_view(self) -> None:
        reason = opengl_unavailable_reason()
        if reason is None:
            try:
                import pyqtgraph.opengl as gl

                view = gl.GLViewWidget(self)
                view.setBackgroundColor("k")
                view.opts["fov"] = 45
            except Exception as exc:  # noqa: BLE001 - a driver failure drops the 3D view, not the app  # pragma: no cover
                reason = f"the OpenGL view could not be created: {exc}"
        if reason is not None:
            self.unavailable_reason = reason
            self.placeholder.setText(f"3D surface view unavailable:\n{reason}")
            log.info("3D surface view unavailable: %s", reason)
            return
        self.gl_view = view
        view.setObjectName("view_3d_gl")
        self._layout.removeWidget(self.placeholder)
        self.placeholder.hide()
        self._layout.addWidget(view)
        self.info_label = QtWidgets.QLabel("3D  (drag: rotate, wheel: zoom, middle-drag: pan)", view)
        self.info_label.setStyleSheet(_INFO_STYLE)
        self.info_label.setAttribute(QtCore.Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.info_label.move(4, 4)
        self.info_label.adjustSize()
        self._update_scan_box()

    # ----- GL items --------------------------------------------------------------------
    def _clear_items(self) -> None:
        if self.gl_view is not None:
            for item in self.items.values():
                self.gl_view.removeItem(item)
        self.items.clear()

    def _set_item(self, value: int, mesh: LabelMesh | None) -> None:
        view = self.gl_view
        assert view is not None  # the callers check
        item = self.items.get(value)
        if mesh is None:
            if item is not None:
                view.removeItem(item)
                del self.items[value]
            return
        data = _mesh_data(mesh)
        if item is None:
            item = _mesh_item_class()(meshdata=data, smooth=True, shader=_headlight_shader(), glOptions=_gl_options(False))
            self.items[value] = item
            view.addItem(item)
        else:
            item.setMeshData(meshdata=data)
        self._style_item(value)

    def _style_item(self, value: int) -> None:
        item = self.items.get(value)
        if item is None:
            return
        label = self.document.labels.labels.get(value)
        if label is None:
            item.setVisible(False)
            return
        r, g, b = (c / 255.0 for c in label.colour)
        alpha = float(label.opacity)
        translucent = alpha < 1.0
        item.setColor((r, g, b, alpha))
        item.setGLOptions(_gl_options(translucent))
        item.setDepthValue(1 if translucent else 0)  # drawn after the opaque surfaces, which show through
        item.setVisible(bool(label.visible and label.mesh_visible and alpha > 0.0))

    def _update_scan_box(self) -> None:
        """A faint outline of the scan's extent, for context."""
        if self.gl_view is None:
            return
        import pyqtgraph.opengl as gl

        if self._box_item is not None:
            self.gl_view.removeItem(self._box_item)
            self._box_item = None
        vol = self.document.image
        if vol is None:
            return
        self._box_item = gl.GLLinePlotItem(pos=_box_segments(vol), mode="lines", color=(0.55, 0.55, 0.6, 0.6),
                                           width=1.0, antialias=False)
        self.gl_view.addItem(self._box_item)

    # ----- camera ------------------------------------------------------------------------
    def reset_camera(self) -> None:
        """Seen from the front (anterior), head up, slightly from above; labels framed
        (the whole scan when there are none)."""
        self._reset_camera_pending = False
        if self.gl_view is None or self.document.image is None:
            return
        bounds = self.surfaces.bounds_mm()
        if bounds is None:
            corners = _scan_corners(self.document.image)
            bounds = corners.min(axis=0), corners.max(axis=0)
        lo, hi = (np.asarray(b, dtype=np.float64) for b in bounds)
        centre = (lo + hi) / 2.0
        radius = max(float(np.linalg.norm(hi - lo)) / 2.0, 1.0)
        fov = float(self.gl_view.opts.get("fov", 60))
        distance = 1.15 * radius / math.tan(math.radians(fov) / 2.0)
        # LPS: the anterior side is -y; pyqtgraph's camera sits at azimuth angle in xy, z up
        self.gl_view.setCameraPosition(pos=QtGui.QVector3D(*centre), distance=distance, elevation=15, azimuth=-90)

    # ----- tests / screenshots -----------------------------------------------------------
    def render_image(self, width: int, height: int) -> np.ndarray | None:
        """The view rendered offscreen as an (height, width, 4) RGBA uint8 array (None without GL)."""
        if self.gl_view is None:
            return None
        bgra = self.gl_view.renderToArray((width, height))
        return bgra[..., [2, 1, 0, 3]].copy()


_SHADER: list = []


_MESH_CLASS: list[type] = []


def _mesh_item_class() -> type:
    """``GLMeshItem`` that turns depth writing back on after it paints: a translucent surface
    paints without it, and the view clears the depth buffer of the next frame only while it is on."""
    if not _MESH_CLASS:
        import pyqtgraph.opengl as gl
        from OpenGL import GL

        class SurfaceMesh(gl.GLMeshItem):
            def paint(self) -> None:
                try:
                    super().paint()
                finally:
                    GL.glDepthMask(GL.GL_TRUE)

        _MESH_CLASS.append(SurfaceMesh)
    return _MESH_CLASS[0]


def _gl_options(translucent: bool) -> dict:
    """Opaque: depth-tested, no blending. Translucent: blended over what is behind it,
    depth-tested against the opaque surfaces but not writing depth, so translucent surfaces do
    not hide one another."""
    from OpenGL import GL

    if not translucent:
        return {GL.GL_DEPTH_TEST: True, GL.GL_BLEND: False, GL.GL_CULL_FACE: False}
    return {GL.GL_DEPTH_TEST: True, GL.GL_BLEND: True, GL.GL_CULL_FACE: False,
            "glBlendFunc": (GL.GL_SRC_ALPHA, GL.GL_ONE_MINUS_SRC_ALPHA), "glDepthMask": (GL.GL_FALSE,)}


def _headlight_shader():
    """A light just above-left of the camera, lighting both sides of a face (pyqtgraph's
    "shaded" lights from behind-right, which leaves the faces towards the camera dark)."""
    if not _SHADER:
        from pyqtgraph.opengl import shaders

        _SHADER.append(shaders.ShaderProgram("segloop_headlight", [
            shaders.VertexShader("""
                uniform mat4 u_mvp;
                uniform mat3 u_normal;
                attribute vec4 a_position;
                attribute vec3 a_normal;
                attribute vec4 a_color;
                varying vec4 v_color;
                varying vec3 v_normal;
                void main() {
                    v_normal = normalize(u_normal * a_normal);
                    v_color = a_color;
                    gl_Position = u_mvp * a_position;
                }
            """),
            shaders.FragmentShader("""
                #ifdef GL_ES
                precision mediump float;
                #endif
                varying vec4 v_color;
                varying vec3 v_normal;
                void main() {
                    vec3 n = normalize(v_normal);
                    vec3 l = normalize(vec3(-0.35, 0.45, 1.0));
                    float d = abs(dot(n, l));
                    vec3 h = normalize(l + vec3(0.0, 0.0, 1.0));
                    float s = 0.2 * pow(abs(dot(n, h)), 24.0);
                    gl_FragColor = vec4(v_color.rgb * (0.25 + 0.75 * d) + vec3(s), v_color.a);
                }
            """),
        ]))
    return _SHADER[0]


def _mesh_data(mesh: LabelMesh):
    """pyqtgraph MeshData using the mesh's own normals (pyqtgraph's per-vertex loop would
    take seconds for a big mesh)."""
    import pyqtgraph.opengl as gl

    class _MeshData(gl.MeshData):
        def __init__(self, m: LabelMesh) -> None:
            super().__init__(vertexes=m.vertices, faces=m.faces)
            self._normals = m.normals

        def vertexNormals(self, indexed=None):
            return self._normals if indexed is None else self._normals[self.faces()]

    return _MeshData(mesh)


def _scan_corners(vol) -> np.ndarray:
    """World (LPS mm) corners of the scan's voxel grid (voxel edges, not centres)."""
    nk, nj, ni = vol.shape
    corners = np.array([(k, j, i) for k in (-0.5, nk - 0.5) for j in (-0.5, nj - 0.5) for i in (-0.5, ni - 0.5)])
    return vol.voxel_to_world(corners)


def _box_segments(vol) -> np.ndarray:
    c = _scan_corners(vol)
    edges = [(a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count("1") == 1]
    return np.asarray([c[i] for e in edges for i in e], dtype=np.float32)
