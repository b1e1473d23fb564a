"""One controller per concern of the learning loop, each built with what it needs passed in.

* :mod:`~desktop_app.controllers.project` -- open / switch / create / delete projects;
* :mod:`~desktop_app.controllers.inference` -- run the model, review its uncertainty;
* :mod:`~desktop_app.controllers.dataset` -- add the corrected case to the project's dataset;
* :mod:`~desktop_app.controllers.training` -- fine-tune in a child process (pause, resume, cancel);
* :mod:`~desktop_app.controllers.first_model` -- plan and train a project's first model;
* :mod:`~desktop_app.controllers.versions` -- promote / roll back / delete / compare versions;
* :mod:`~desktop_app.controllers.modality_guard` -- "this scan does not look like CT/MR" before acting.

They share state only through Qt-free objects passed to each
(:class:`~desktop_app.state.project_session.ProjectSession`,
:class:`~desktop_app.state.prediction.PredictionState`,
:class:`~desktop_app.state.scan_checks.ScanChecks`) and the small :class:`UiContext`
(dialog parent, workers, error dialog, status bar). :mod:`desktop_app.learning` builds them.
"""

from desktop_app.controllers.context import UiContext

__all__ = ["UiContext"]
