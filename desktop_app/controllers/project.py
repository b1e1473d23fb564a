"""Projects in the app: open one at start, switch, create (File > New project…), delete.

* **At start** (:meth:`ProjectController.open_initial`): :func:`unet_engine.projects.first_start`
  (moves an earlier SegLoop's dataset and registry into "Hippocampus (MRI)", or creates that
  project from the bundled model -- renames and a few small files, so it runs before the
  window shows), then the remembered project (settings), else the one just made, else the first.
* **Always visible**: the window title ("… — Project: NAME — SegLoop"), the toolbar switcher
  and File > Switch project.
* **Switching** is refused while a background job runs (inference, adding a case, training…:
  cancel or wait) and asks before dropping an unsaved mask. Everything else follows
  ``session.project_changed``: the views' labels (here), the model text, dataset, versions,
  effort chart and saved run (their controllers).
* **New project**: the dialog's spec goes to :meth:`ProjectStore.create` in a worker (it may
  copy a checkpoint); the store's refusal (duplicate or invalid name, bad labels, labels
  contradicting the model) is shown in the dialog; the new project is opened.
* **Delete project** moves it to the store's trash after a question; the open project is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6 import QtCore, QtGui, QtWidgets

from desktop_app import project_jobs
from desktop_app.controllers.context import UiContext
from desktop_app.settings import Settings
from desktop_app.state.document import Document
from desktop_app.state.labels import Label, as_rgb
from desktop_app.state.project_session import ProjectSession
from desktop_app.unsaved_mask import CANCEL, DISCARD, SAVING
from desktop_app.widgets.delete_project_dialog import DeleteProjectDialog
from desktop_app.widgets.new_project_dialog import NewProjectDialog
from desktop_app.widgets.project_switcher import ProjectSwitcher
from unet_engine.errors import SegLoopError
from unet_engine.projects import Project, first_start, name_key

log = logging.getLogger(__name__)


def project_labels(project: Project) -> list[Label]:
    """The project's labels as the document's label entries (names and colours)."""
    return [Label(x.value, x.name, as_rgb(x.colour)) for x in project.label_list]


class ProjectController(QtCore.QObject):
    """Open, switch, create and delete projects (see the module docstring)."""

    project_opened = QtCore.Signal(object)  # Project
    project_created = QtCore.Signal(object)  # Project
    project_deleted = QtCore.Signal(str, object)  # name, where it went (Path)
    switch_refused = QtCore.Signal(str)  # why

    def __init__(self, ctx: UiContext, session: ProjectSession, settings: Settings, document: Document,
                 switcher: ProjectSwitcher, menu: QtWidgets.QMenu, actions: dict[str, QtGui.QAction],
                 apply_labels: Callable[[list[Label]], None], set_title: Callable[[str | None], None],
                 resolve_unsaved: Callable[[Callable[[], Any]], str], discard_mask: Callable[[], None],
                 parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("project_controller")
        self.ctx, self.session, self.settings, self.document = ctx, session, settings, document
        self.switcher, self.menu = switcher, menu
        self.apply_labels, self.set_title = apply_labels, set_title
        # resolve_unsaved(then): the Save / Discard / Cancel question (desktop_app.unsaved_mask)
        self.resolve_unsaved, self.discard_mask = resolve_unsaved, discard_mask
        self.new_dialog: NewProjectDialog | None = None
        self.delete_dialog: DeleteProjectDialog | None = None
        self.create_worker: Any = None
        self.delete_worker: Any = None
        self.last_refusal: str | None = None
        self._menu_group = QtGui.QActionGroup(self)
        switcher.project_chosen.connect(self.switch_to)
        actions["new_project"].triggered.connect(lambda: self.show_new_project_dialog())
        actions["delete_project"].triggered.connect(lambda: self.show_delete_project_dialog())
        session.labels_changed.connect(lambda p: self.apply_labels(project_labels(p)))

    # ----- opening --------------------------------------------------------------------------
    def open_initial(self) -> Project | None:
        """First start (migration / default project), then the remembered project, else the one
        just made, else the first; returns the project opened (None: there is none)."""
        store = self.session.store
        made = None
        try:
            made = first_start(store.root.parent, store)
        except SegLoopError as exc:
            self.ctx.show_error("Could not set up the projects", exc)
        candidates = [self.settings.last_project(), made.name if made is not None else None, *store.names()]
        for name in candidates:
            if not name or not store.exists(name):
                continue
            try:
                project = store.open(name)
            except SegLoopError as exc:
                log.warning("cannot open project %s: %s", name, exc)
                continue
            self._open(project)
            return project
        self._open(None)
        return None

    def _open(self, project: Project | None) -> None:
        self.session.open(project)
        if project is not None:
            self.settings.set_last_project(project.name)
            self.apply_labels(project_labels(project))
        self.set_title(project.name if project is not None else None)
        self.refresh_list()
        self.project_opened.emit(project)

    def refresh_list(self) -> None:
        """The switcher and File > Switch project list the store's projects, the open one checked."""
        names = self.session.store.names()
        current = self.session.name
        self.switcher.set_projects(names, current)
        self.menu.clear()
        for action in self._menu_group.actions():
            self._menu_group.removeAction(action)
        for name in names:
            act = self.menu.addAction(name)
            act.setCheckable(True)
            act.setChecked(current is not None and name_key(name) == name_key(current))
            act.triggered.connect(lambda _=False, n=name: self.switch_to(n))
            self._menu_group.addAction(act)
        self.menu.setEnabled(bool(names))

    # ----- switching ------------------------------------------------------------------------
    def switch_to(self, name: str) -> bool:
        """Open project ``name``; False when refused (a job runs, the user kept the unsaved mask)
        or it cannot be read (the error is shown)."""
        current = self.session.name
        if current is not None and name_key(name) == name_key(current):
            return True
        busy = self.ctx.busy_jobs()
        if busy:
            self.refuse(f"Cannot switch project while this runs: {', '.join(busy)}. "
                        "Wait for it to finish or cancel it, then switch.")
            return False
        if self.document.dirty:
            answer = self.resolve_unsaved(lambda: self.switch_to(name))
            if answer == SAVING:
                self.refresh_list()  # the switcher shows the open project until the switch happens
                return False  # switches once the mask is saved
            if answer == CANCEL:
                self.refuse("Switch cancelled: the mask has unsaved changes (save it first).", dialog=False)
                return False
            if answer == DISCARD:
                self.discard_mask()
        try:
            project = self.session.store.open(name)
        except SegLoopError as exc:
            self.refresh_list()
            self.ctx.show_error("Could not open the project", exc)
            return False
        self._open(project)
        self.ctx.show_message(f"Project {project.name} ({project.modality}) is open", 6000)
        return True

    def refuse(self, why: str, dialog: bool = True) -> None:
        """Say why the switch did not happen (a non-blocking box) and put the switcher back."""
        self.last_refusal = why
        self.refresh_list()
        self.ctx.show_message(why, 10000)
        if dialog:
            box = QtWidgets.QMessageBox(QtWidgets.QMessageBox.Icon.Information, "Project not switched", why,
                                        QtWidgets.QMessageBox.StandardButton.Ok, self.ctx.parent)
            box.setObjectName("switch_refused_box")
            box.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
            box.open()
        self.switch_refused.emit(why)

    # ----- creating -------------------------------------------------------------------------
    def show_new_project_dialog(self) -> NewProjectDialog:
        if self.new_dialog is not None:
            self.new_dialog.raise_()
            return self.new_dialog
        dlg = NewProjectDialog(self.ctx.parent, start_dir=self.settings.last_dir())
        dlg.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
        dlg.create_requested.connect(lambda spec: self.create_project(spec, dlg))
        dlg.finished.connect(lambda _r: setattr(self, "new_dialog", None))
        self.new_dialog = dlg
        dlg.open()
        return dlg

    def create_project(self, spec: dict[str, Any], dialog: NewProjectDialog | None = None) -> Any:
        """Create the project of ``spec`` (name, modality, labels, start_model) in a worker, then
        open it; errors go to ``dialog`` (or an error box). Returns the worker."""
        if self.create_worker is not None:
            return None

        made: list[Project] = []

        def done(project: Project) -> None:
            made.append(project)
            self.project_created.emit(project)
            if dialog is not None:
                dialog.accept()
            self.refresh_list()

        def failed(exc: BaseException) -> None:
            if dialog is not None:
                dialog.show_error(str(exc) if isinstance(exc, SegLoopError) else f"{type(exc).__name__}: {exc}")
            else:
                self.ctx.show_error("Could not create the project", exc)

        def finished() -> None:  # after the worker left the busy list: switching is allowed now
            self.create_worker = None
            if made and not self.switch_to(made[0].name):
                self.ctx.show_message(f"Project {made[0].name} was created; switch to it when the job ends", 10000)

        self.create_worker = self.ctx.workers.start(
            project_jobs.create_project_job, self.session.store.root, spec.get("name", ""), spec.get("modality", ""),
            spec.get("labels"), spec.get("start_model"), description="Creating the project",
            on_result=lambda p: self.ctx.guard("Could not open the new project", done, p), on_error=failed,
            on_finished=finished)
        return self.create_worker

    # ----- deleting -------------------------------------------------------------------------
    def show_delete_project_dialog(self) -> DeleteProjectDialog:
        if self.delete_dialog is not None:
            self.delete_dialog.raise_()
            return self.delete_dialog
        dlg = DeleteProjectDialog(self.ctx.parent)
        dlg.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
        dlg.set_projects(self.session.store.names(), self.session.name)
        dlg.delete_requested.connect(lambda name: self.delete_project(name, dlg))
        dlg.finished.connect(lambda _r: setattr(self, "delete_dialog", None))
        self.delete_dialog = dlg
        dlg.open()
        return dlg

    def ask_delete_project(self, name: str) -> bool:
        """Blocking confirmation (tests replace this method)."""
        return self.ctx.ask_yes_no("Delete project",
                                   f"Move project {name!r} (its dataset and model versions) to the trash folder?")

    def delete_project(self, name: str, dialog: DeleteProjectDialog | None = None) -> Any:
        """Move project ``name`` to the trash after a question (in a worker); the open project
        is refused with a message. Returns the worker (None: refused or not confirmed)."""
        current = self.session.name
        if current is not None and name_key(name) == name_key(current):
            why = f"Project {current!r} is open: switch to another project before deleting it."
            self.last_refusal = why
            if dialog is not None:
                dialog.show_message(why)
            else:
                self.ctx.show_error("Project not deleted", why)
            return None
        if self.delete_worker is not None or not self.ask_delete_project(name):
            return None

        def done(where: Path) -> None:
            self.refresh_list()
            if dialog is not None:
                dialog.set_projects(self.session.store.names(), self.session.name)
                dialog.show_message(f"Moved {name!r} to {where.parent.name}/{where.name}", error=False)
            self.ctx.show_message(f"Project {name} moved to the trash ({where})", 10000)
            self.project_deleted.emit(name, where)

        def failed(exc: BaseException) -> None:
            if dialog is not None:
                dialog.show_message(str(exc))
            else:
                self.ctx.show_error("Could not delete the project", exc)

        def finished() -> None:
            self.delete_worker = None

        self.delete_worker = self.ctx.workers.start(
            project_jobs.delete_project_job, self.session.store.root, name, current, description="Deleting the project",
            on_result=lambda w: self.ctx.guard("Could not delete the project", done, w), on_error=failed,
            on_finished=finished)
        return self.delete_worker
