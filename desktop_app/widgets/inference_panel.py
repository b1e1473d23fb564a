"""The "AI model" panel: run the model, review its uncertainty, add the case to the training set.

A view only: buttons emit signals; the inference controller
(:mod:`desktop_app.controllers.inference`) and the dataset controller
(:mod:`desktop_app.controllers.dataset`) do the work and call the ``set_*`` methods back.
"""

from __future__ import annotations

from PySide6 import QtCore, QtWidgets

SCOPES = (("volume", "Whole scan"), ("slice", "Current slice only"), ("box", "Box around the cursor"))


class InferencePanel(QtWidgets.QWidget):
    run_requested = QtCore.Signal()
    cancel_requested = QtCore.Signal()
    uncertainty_toggled = QtCore.Signal(bool)
    next_uncertain_requested = QtCore.Signal()
    mark_reviewed_requested = QtCore.Signal()
    add_to_dataset_requested = QtCore.Signal()

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("inference_panel")
        lay = QtWidgets.QVBoxLayout(self)
        self.model_label = QtWidgets.QLabel("Model: (none)")
        self.model_label.setObjectName("model_label")
        self.model_label.setWordWrap(True)
        self.device_label = QtWidgets.QLabel("Device: —")
        self.device_label.setObjectName("device_label")
        lay.addWidget(self.model_label)
        lay.addWidget(self.device_label)

        form = QtWidgets.QFormLayout()
        self.tta_check = QtWidgets.QCheckBox("Test-time augmentation (flips, slower)")
        self.scope_combo = QtWidgets.QComboBox()
        for key, text in SCOPES:
            self.scope_combo.addItem(text, key)
        self.box_spin = QtWidgets.QSpinBox()
        self.box_spin.setRange(4, 512)
        self.box_spin.setValue(32)
        self.box_spin.setSuffix(" voxels")
        self.box_spin.setToolTip("Half-size of the box around the cursor")
        form.addRow(self.tta_check)
        form.addRow("Predict", self.scope_combo)
        form.addRow("Box half-size", self.box_spin)
        lay.addLayout(form)

        row = QtWidgets.QHBoxLayout()
        self.run_button = QtWidgets.QPushButton("Run model")
        self.run_button.setObjectName("run_model_button")
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        row.addWidget(self.run_button)
        row.addWidget(self.cancel_button)
        lay.addLayout(row)
        self.progress = QtWidgets.QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setFormat("")
        lay.addWidget(self.progress)
        self.estimate_label = QtWidgets.QLabel("")
        self.estimate_label.setObjectName("inference_estimate")
        self.estimate_label.setToolTip("Remaining time, from the rate of the work done so far")
        lay.addWidget(self.estimate_label)
        self.status_label = QtWidgets.QLabel("")
        self.status_label.setObjectName("inference_status")
        self.status_label.setWordWrap(True)
        lay.addWidget(self.status_label)

        review = QtWidgets.QGroupBox("Uncertainty review")
        rl = QtWidgets.QVBoxLayout(review)
        self.uncertainty_check = QtWidgets.QCheckBox("Show uncertainty")
        self.next_button = QtWidgets.QPushButton("Next uncertain slice")
        self.mark_button = QtWidgets.QPushButton("Mark slice reviewed")
        self.review_label = QtWidgets.QLabel("No uncertainty map yet (run the model)")
        self.review_label.setObjectName("review_label")
        for w in (self.uncertainty_check, self.next_button, self.mark_button, self.review_label):
            rl.addWidget(w)
        lay.addWidget(review)

        self.add_button = QtWidgets.QPushButton("Add to training set")
        self.add_button.setObjectName("add_to_dataset_button")
        self.add_button.setToolTip("Store the scan, the corrected mask and what you changed in the retraining dataset")
        lay.addWidget(self.add_button)
        self.add_label = QtWidgets.QLabel("")
        self.add_label.setObjectName("add_case_status")
        self.add_label.setWordWrap(True)
        lay.addWidget(self.add_label)
        lay.addStretch(1)

        self.run_button.clicked.connect(self.run_requested)
        self.cancel_button.clicked.connect(self.cancel_requested)
        self.uncertainty_check.toggled.connect(self.uncertainty_toggled)
        self.next_button.clicked.connect(self.next_uncertain_requested)
        self.mark_button.clicked.connect(self.mark_reviewed_requested)
        self.add_button.clicked.connect(self.add_to_dataset_requested)
        self.scope_combo.currentIndexChanged.connect(lambda _i: self.box_spin.setEnabled(self.scope == "box"))
        self.box_spin.setEnabled(False)
        self.set_review_enabled(False)

    # ----- reading options ---------------------------------------------------------------------
    @property
    def scope(self) -> str:
        return str(self.scope_combo.currentData())

    def set_scope(self, key: str) -> None:
        self.scope_combo.setCurrentIndex([k for k, _ in SCOPES].index(key))

    # ----- updates from the controller ----------------------------------------------------------
    def set_model_text(self, text: str, ok: bool = True) -> None:
        self.model_label.setText(text)
        self.model_label.setStyleSheet("" if ok else "color: #c0392b; font-weight: bold;")

    def set_device(self, text: str) -> None:
        self.device_label.setText(f"Device: {text}")

    def set_running(self, running: bool, can_run: bool = True) -> None:
        self.run_button.setEnabled(can_run and not running)
        self.cancel_button.setEnabled(running)
        if not running:
            self.progress.setFormat("")

    def reset_progress(self) -> None:
        """An empty bar with no text (idle, cancelled or failed)."""
        self.progress.setValue(0)
        self.progress.setFormat("")
        self.estimate_label.setText("")

    def set_estimate(self, text: str) -> None:
        """The time estimate under the bar ("about 12 s left · slice in view ready after 1.2 s")."""
        self.estimate_label.setText(text)

    def set_progress(self, fraction: float, message: str = "") -> None:
        self.progress.setValue(int(round(1000 * min(1.0, max(0.0, fraction)))))
        self.progress.setFormat(f"{message} %p%" if message else "%p%")

    def set_status(self, text: str) -> None:
        self.status_label.setText(text)

    def set_review(self, text: str, enabled: bool) -> None:
        self.review_label.setText(text)
        self.set_review_enabled(enabled)

    def set_review_enabled(self, enabled: bool) -> None:
        self.next_button.setEnabled(enabled)
        self.mark_button.setEnabled(enabled)

    def set_uncertainty_checked(self, on: bool) -> None:
        self.uncertainty_check.blockSignals(True)
        self.uncertainty_check.setChecked(on)
        self.uncertainty_check.blockSignals(False)
