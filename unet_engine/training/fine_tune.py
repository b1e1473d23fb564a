"""Fine-tuning: a cancellable, pausable, resumable generator that ends in a registry version.

``fine_tune(config, dataset=..., registry=...)`` yields a :class:`StepReport` after every
optimisation step and an :class:`EpochReport` after every validation, and returns a
:class:`TrainResult`. The GUI drives it from a worker thread; ``segloop train`` from the
terminal, also under ``torchrun`` (see :mod:`unet_engine.training.distributed`). The run
itself is a :class:`~unet_engine.training.trainer.Trainer`.

What one run does:

* starts from a registry version (default: the active one; else the bundled default
  model, imported as the first version; else a new network from ``config.model_spec``);
* streams slices (2D/2.5D, along inference's slice axis) or patches (3D) from disk
  (:mod:`unet_engine.training.sampling`), each batch mixing cases new since the parent model with
  replayed earlier cases, prepared ahead in a thread (:mod:`unet_engine.training.prefetch`);
  augments on the device (:mod:`unet_engine.training.augment`);
* minimises CE + soft Dice (:class:`unet_engine.training.losses.DiceCELoss`) with extra CE weight
  on voxels the reviewer edited; AdamW, linear warm-up then cosine decay
  (:mod:`unet_engine.training.schedule`, torch's schedulers); AMP on CUDA;
* validates on the dataset's fixed val split with the inference code itself, keeps the
  best weights and stops early after ``patience`` epochs without improvement;
* saves a resumable state every ``checkpoint_every_steps`` steps and at pause/cancel
  (:mod:`unet_engine.training.state`); ``resume=True`` continues bit-for-bit;
* registers the best weights as a new version (rank 0 only under DDP).

Determinism: with the same seed, dataset and config a CPU run gives the same weights;
every random draw comes from generators whose states are saved in the resumable state.
"""

from __future__ import annotations

import threading
from collections.abc import Generator
from pathlib import Path
from typing import Any

from unet_engine.progress import CancelToken
from unet_engine.registry.versions import ModelRegistry
from unet_engine.training.config import TrainConfig
from unet_engine.training.reports import EpochReport, StepReport, TrainResult
from unet_engine.training.trainer import Trainer, weights_sha256

__all__ = ["EpochReport", "StepReport", "TrainResult", "Trainer", "fine_tune", "weights_sha256"]


def fine_tune(config: TrainConfig, *, dataset: Any, registry: ModelRegistry | None = None,
              from_version: str | None = None, pause: threading.Event | None = None,
              cancel: CancelToken | None = None, resume: bool = False, state_dir: str | Path | None = None,
              promote: bool = False, name: str = "", notes: str = "",
              ) -> Generator[StepReport | EpochReport, None, TrainResult]:
    """Fine-tune on ``dataset`` (a :class:`~unet_engine.data.dataset.RetrainingDataset`).

    ``from_version``: a registry version (``"v0003"``, ``"active"``), ``"default"`` (the
    bundled model), ``"scratch"`` (new network from ``config.model_spec``), a checkpoint
    folder path, or None (active version, else bundled default, else scratch).
    ``pause``: while set, the run saves its state and waits (a ``paused`` StepReport is
    yielded first). ``cancel``: saves the state and raises CancelledError. ``resume``:
    continue the saved run in ``state_dir`` (default: the registry's ``training/`` folder
    for this dataset) with its saved config, except that ``max_minutes`` (training time
    summed over all sessions, pauses excluded) is taken from ``config``. A new run (not
    ``resume``) removes an older run's saved state in that folder as its training starts, so
    a later ``resume`` never continues the older run. ``promote``:
    make the new version active. Ranks other than 0 (torchrun) write nothing.
    """
    trainer = Trainer(config, dataset=dataset, registry=registry, from_version=from_version, cancel=cancel,
                      resume=resume, state_dir=state_dir)
    return (yield from trainer.run(pause=pause, promote=promote, name=name, notes=notes))
