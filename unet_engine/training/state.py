"""The resumable training state: everything needed to continue a run bit-for-bit.

Two files in the run's folder:

* ``state-<step>.safetensors``: model weights (``model.*``), the best weights so far
  (``best.*``) and the optimizer's tensors (``opt.<param>.<name>``);
* ``state.json``: the step, the optimizer's scalar state and param groups, the LR
  scheduler, the AMP scaler, every rank's sampler and RNG states (torch generators as
  base64), the run state (:class:`~unet_engine.training.run_state.RunState`: step, curves,
  early stopping) and the config.

The safetensors file gets a new name at every save and ``state.json``, written last and
atomically, names it; the previous tensor file is removed only afterwards. A kill at any
moment therefore leaves a ``state.json`` that points at a complete tensor file. Nothing
is pickled: tensors go through safetensors, the rest is JSON.
"""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from typing import Any

import torch

from unet_engine.io.atomic import atomic_path, atomic_write_json
from unet_engine.errors import SegLoopError

log = logging.getLogger(__name__)

STATE_JSON = "state.json"
FORMAT = "segloop-train-state/2"
#: Format 1 (before the run state and torch's schedulers) is still resumed: see Trainer._restore.
LEGACY_FORMAT = "segloop-train-state/1"


def tensor_to_b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.detach().cpu().contiguous().numpy().tobytes()).decode("ascii")


def b64_to_byte_tensor(s: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8).clone()


def _split_optimizer(opt_state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in opt_state["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"opt.{idx}.{k}"] = v.detach().cpu().contiguous().clone()
            else:
                scalars.setdefault(str(idx), {})[k] = v
    groups = json.loads(json.dumps(opt_state["param_groups"], default=lambda o: list(o) if isinstance(o, tuple) else None))
    return tensors, {"scalars": scalars, "param_groups": groups}


def _join_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, t in tensors.items():
        if key.startswith("opt."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = t
    for idx, d in meta["scalars"].items():
        state.setdefault(int(idx), {}).update(d)
    groups = []
    for g in meta["param_groups"]:
        g = dict(g)
        if "betas" in g and isinstance(g["betas"], list):
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    return {"state": state, "param_groups": groups}


def save_state(folder: Path, *, model_state: dict[str, torch.Tensor], best_state: dict[str, torch.Tensor] | None,
               optimizer_state: dict[str, Any], info: dict[str, Any]) -> Path:
    """Write a state atomically (see the module docstring); returns ``state.json``'s path."""
    from safetensors.torch import save as st_save

    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous().clone() for k, v in model_state.items()}
    if best_state is not None:
        tensors.update({f"best.{k}": v.detach().cpu().contiguous().clone() for k, v in best_state.items()})
    opt_tensors, opt_meta = _split_optimizer(optimizer_state)
    tensors.update(opt_tensors)
    name = f"state-{int(info['step']):08d}.safetensors"  # same step twice: same content, atomic replace
    with atomic_path(folder / name) as tmp:
        tmp.write_bytes(st_save(tensors))
    meta = dict(info)
    meta.update({"format": FORMAT, "tensors": name, "optimizer": opt_meta, "has_best": best_state is not None})
    atomic_write_json(folder / STATE_JSON, meta)
    for p in folder.glob("state-*.safetensors"):
        if p.name != name:
            p.unlink(missing_ok=True)
    return folder / STATE_JSON


def read_state_json(folder: Path) -> dict[str, Any] | None:
    p = folder / STATE_JSON
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SegLoopError(f"the saved training state is unreadable ({exc}); delete it to start over", p) from None


def load_state(folder: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, torch.Tensor] | None, dict[str, Any]]:
    """``(info, model_state, best_state or None, optimizer_state)`` of the saved state."""
    from safetensors.torch import load as st_load

    info = read_state_json(folder)
    if info is None:
        raise SegLoopError("no saved training state to resume from (the last run finished, or a newer run "
                           "started since and stopped before saving its state); start a new run", folder)
    if info.get("format") not in (FORMAT, LEGACY_FORMAT):
        if str(info.get("format", "")).startswith("segloop-train-state/"):
            raise SegLoopError(f"the saved run was written by another SegLoop version ({info.get('format')}) and "
                               "cannot be resumed by this one; start a new run", folder / STATE_JSON)
        raise SegLoopError(f"unknown training-state format {info.get('format')!r}", folder / STATE_JSON)
    path = folder / info["tensors"]
    try:
        tensors = st_load(path.read_bytes())
    except Exception as exc:  # noqa: BLE001 - any failure means the same thing to the user
        raise SegLoopError(f"the saved training tensors are unreadable ({exc}); delete the folder to start over", path) from None
    model = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")} if info.get("has_best") else None
    opt = _join_optimizer({k: v for k, v in tensors.items() if k.startswith("opt.")}, info["optimizer"])
    return info, model, best, opt


def clear_state(folder: Path) -> None:
    """Remove a finished run's state (``state.json`` first, so no half state is ever seen)."""
    (folder / STATE_JSON).unlink(missing_ok=True)
    for p in folder.glob("state-*.safetensors"):
        p.unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:
        pass


def retire_state(folder: Path) -> int | None:
    """A new run starts in ``folder``: remove an older run's saved state now, so that
    ``--resume`` can never continue that older run when the new one is killed before its
    first save. Returns the step of the state removed (None if there was none)."""
    try:
        info = read_state_json(folder)
    except SegLoopError:
        info = {}  # unreadable: replaced all the same
    if info is None:
        return None
    step = info.get("step") if isinstance(info, dict) else None
    log.warning("a new run replaces the saved state of the previous run (paused at step %s) in %s", step, folder)
    clear_state(folder)
    return int(step) if isinstance(step, int) else -1
