"""Bounds on model folders, checked before anything is parsed, built or allocated.

A model folder comes from outside (``--model PATH``, Import model), so its ``card.json``
and ``model.safetensors`` are treated as untrusted input:

* files are read only when they are regular files (not a FIFO, a device such as
  ``/dev/zero`` behind a symlink, a socket or a folder) of a plausible size;
* the card's JSON may not nest deeper than :data:`MAX_JSON_DEPTH`;
* the card's architecture, labels, colours, target spacing and training patch must lie in
  sane ranges (a ``base_width`` of 1,000,000 or a spacing of 0.001 mm would ask for
  terabytes), and the architecture's parameter count is bounded before a network is built;
* the weights file may not be bigger than the card's architecture can explain.

Every refusal is a :class:`~unet_engine.errors.CheckpointError` naming the file.
"""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import Any

from unet_engine.errors import CheckpointError

MAX_CARD_BYTES = 8 * 1024 * 1024  # the bundled card is ~43 KB; a 10,000-case history is ~3 MB
MAX_JSON_DEPTH = 32
MAX_NUM_CLASSES = 256
MAX_IN_CHANNELS = 64
MAX_BASE_WIDTH = 512
MAX_DEPTH = 8
MAX_CONTEXT_SLICES = 31
MAX_PARAMETERS = 500_000_000  # 2 GB of float32 weights
MAX_WEIGHTS_BYTES = 4 * 1024**3
SPACING_RANGE_MM = (0.01, 100.0)
PATCH_EDGE_RANGE = (1, 1024)
WEIGHTS_SLACK_BYTES = 16 * 1024 * 1024  # header and alignment on top of the tensor data


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def check_regular_file(path: str | Path, max_bytes: int, what: str) -> int:
    """Size of ``path`` after checking it is a regular file (links followed) of at most
    ``max_bytes``; raises :class:`CheckpointError` otherwise. Reads nothing."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError as exc:
        raise CheckpointError(f"the {what} is missing", path) from exc
    except OSError as exc:
        raise CheckpointError(f"cannot read the {what}: {exc.strerror or exc}", path) from exc
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointError(f"the {what} is {_kind(st.st_mode)}, not a regular file; refusing to read it", path)
    if st.st_size > max_bytes:
        raise CheckpointError(
            f"the {what} is implausibly large ({st.st_size:,} bytes; at most {max_bytes:,} expected)", path
        )
    return int(st.st_size)


def read_card_text(path: str | Path) -> str:
    """The text of a ``card.json``, refused when it is not a regular file of sane size."""
    path = Path(path)
    check_regular_file(path, MAX_CARD_BYTES, "model card")
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_CARD_BYTES + 1)
    except OSError as exc:
        raise CheckpointError(f"cannot read the model card: {exc.strerror or exc}", path) from exc
    if len(data) > MAX_CARD_BYTES:  # grew between stat and read
        raise CheckpointError(f"the model card is implausibly large (over {MAX_CARD_BYTES:,} bytes)", path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"cannot read the model card: not UTF-8 text ({exc.reason} at byte {exc.start})", path) from exc


def json_depth(value: Any) -> int:
    """Nesting depth of parsed JSON (a scalar is 0), computed without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            depth += 1
            stack.extend((v, depth) for v in item.values())
        elif isinstance(item, list):
            depth += 1
            stack.extend((v, depth) for v in item)
        deepest = max(deepest, depth)
    return deepest


def parse_card_json(text: str, path: str | Path) -> Any:
    """``json.loads`` with deep nesting refused as a :class:`CheckpointError`."""
    try:
        data = json.loads(text)
    except RecursionError as exc:
        raise CheckpointError(f"the model card is nested too deeply (more than {MAX_JSON_DEPTH} levels)", path) from exc
    depth = json_depth(data)
    if depth > MAX_JSON_DEPTH:
        raise CheckpointError(f"the model card is nested too deeply ({depth} levels; at most {MAX_JSON_DEPTH})", path)
    return data


def _int_field(spec: dict[str, Any], name: str, lo: int, hi: int, default: int | None = None) -> int:
    value = spec.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value is None:
        raise ValueError(f"spec.{name} must be a whole number, got {value!r}")
    if isinstance(value, float) and (not math.isfinite(value) or value != int(value)):
        raise ValueError(f"spec.{name} must be a whole number, got {value!r}")
    if not lo <= int(value) <= hi:
        raise ValueError(f"spec.{name} must be {lo}..{hi}, got {value!r}")
    return int(value)


def estimate_parameters(dims: int, in_channels: int, num_classes: int, base_width: int, depth: int) -> int:
    """Upper-bound-ish parameter count of :class:`~unet_engine.model.network.UNet` (conv weights,
    BatchNorm, transposed convolutions), computed from the numbers alone."""
    k = 3**dims
    widths = [base_width * 2**level for level in range(depth + 1)]
    total = 0
    cin = in_channels
    for w in widths:  # encoder double convs
        total += k * (cin * w + w * w) + 4 * 2 * w
        cin = w
    for level in range(depth, 0, -1):  # up (transpose 2^dims kernel) + decoder double conv
        hi, lo = widths[level], widths[level - 1]
        total += 2**dims * hi * lo + lo + k * (2 * lo * lo + lo * lo) + 4 * 2 * lo
    total += widths[0] * num_classes + num_classes
    return total


def check_spec(spec: Any) -> int:
    """Validate the numbers of a card's ``spec``; returns the estimated parameter count."""
    if not isinstance(spec, dict):
        raise ValueError("spec must be a JSON object")
    dims = _int_field(spec, "dims", 2, 3, 2)
    in_channels = _int_field(spec, "in_channels", 1, MAX_IN_CHANNELS, 1)
    num_classes = _int_field(spec, "num_classes", 2, MAX_NUM_CLASSES, 3)
    base_width = _int_field(spec, "base_width", 1, MAX_BASE_WIDTH, 16)
    depth = _int_field(spec, "depth", 0, MAX_DEPTH, 4)
    _int_field(spec, "context_slices", 0, MAX_CONTEXT_SLICES, 0)
    n = estimate_parameters(dims, in_channels, num_classes, base_width, depth)
    if n > MAX_PARAMETERS:
        raise ValueError(
            f"spec describes a network of about {n:,} parameters (base_width {base_width}, depth {depth}); "
            f"at most {MAX_PARAMETERS:,} supported"
        )
    return n


def _label_key(key: Any, what: str, num_classes: int) -> int:
    try:
        value = int(str(key).strip())
    except ValueError as exc:
        raise ValueError(f"{what} key {str(key)[:40]!r} is not a label number") from exc
    if not 0 <= value < num_classes:
        raise ValueError(f"{what} names label {value}, but the network has {num_classes} classes (0..{num_classes - 1})")
    return value


def check_labels(labels: Any, colours: Any, num_classes: int) -> None:
    """Labels and colours: objects keyed by label numbers 0..num_classes-1, short names, RGB."""
    if labels is not None:
        if not isinstance(labels, dict):
            raise ValueError("labels must be a JSON object {number: name}")
        if len(labels) > num_classes:
            raise ValueError(f"the card names {len(labels):,} labels, but the network has {num_classes} classes")
        for key, name in labels.items():
            _label_key(key, "labels", num_classes)
            if not isinstance(name, (str, int, float)) or len(str(name)) > 256:
                raise ValueError(f"label {key} must have a short name, got {str(name)[:40]!r}")
    if colours is not None:
        if not isinstance(colours, dict):
            raise ValueError("colours must be a JSON object {number: [r, g, b]}")
        if len(colours) > num_classes:
            raise ValueError(f"the card has {len(colours):,} colours, but the network has {num_classes} classes")
        for key, rgb in colours.items():
            _label_key(key, "colours", num_classes)
            if (
                not isinstance(rgb, list)
                or len(rgb) not in (3, 4)
                or not all(isinstance(c, (int, float)) and not isinstance(c, bool) and 0 <= c <= 255 for c in rgb)
            ):
                raise ValueError(f"colour of label {key} must be [r, g, b] with values 0..255, got {str(rgb)[:40]}")


def check_preprocessing(pre: Any) -> None:
    """Target spacing (if any) in :data:`SPACING_RANGE_MM`."""
    if pre is None:
        return
    if not isinstance(pre, dict):
        raise ValueError("preprocessing must be a JSON object")
    ts = pre.get("target_spacing")
    if ts is None:
        return
    if not isinstance(ts, list) or len(ts) != 3:
        raise ValueError(f"preprocessing.target_spacing must be 3 values (k, j, i) in mm or null, got {str(ts)[:40]}")
    lo, hi = SPACING_RANGE_MM
    for s in ts:
        if s is None:
            continue
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not (lo <= s <= hi):
            raise ValueError(f"preprocessing.target_spacing {ts} is out of range: each value must be {lo}..{hi} mm or null")


def check_training(training: Any, dims: int) -> None:
    """The training patch (used to size inference windows) must be small positive edges."""
    if training is None:
        return
    if not isinstance(training, dict):
        raise ValueError("training must be a JSON object")
    ps = training.get("patch_size")
    if ps is None:
        return
    lo, hi = PATCH_EDGE_RANGE
    if (
        not isinstance(ps, list)
        or len(ps) not in (2, 3)
        or not all(isinstance(p, int) and not isinstance(p, bool) and lo <= p <= hi for p in ps)
    ):
        raise ValueError(f"training.patch_size must be 2 or 3 whole numbers {lo}..{hi}, got {str(ps)[:60]}")


def check_card_dict(data: Any, path: str | Path) -> int:
    """Validate a parsed card against the bounds above; returns the estimated parameter count.

    Raises :class:`CheckpointError` naming ``path`` and the first problem found.
    """
    if not isinstance(data, dict):
        raise CheckpointError("the model card is invalid: not a JSON object", path)
    try:
        if "spec" not in data:
            raise ValueError("it lacks the field 'spec'")
        spec = data["spec"]
        n = check_spec(spec)
        num_classes = int(spec.get("num_classes", 3))
        check_labels(data.get("labels"), data.get("colours"), num_classes)
        check_preprocessing(data.get("preprocessing"))
        check_training(data.get("training"), int(spec.get("dims", 2)))
        for name in ("name", "version", "notes", "created"):
            value = data.get(name)
            if value is not None and not isinstance(value, (str, int, float)):
                raise ValueError(f"{name} must be text, got a JSON {type(value).__name__}")
        parent = data.get("parent")
        if parent is not None and not isinstance(parent, (str, int)):
            raise ValueError(f"parent must be text or null, got a JSON {type(parent).__name__}")
        for name in ("training", "metrics"):
            if data.get(name) is not None and not isinstance(data.get(name), dict):
                raise ValueError(f"{name} must be a JSON object")
    except ValueError as exc:
        raise CheckpointError(f"the model card is invalid: {exc}", path) from exc
    return n


def max_weights_bytes(parameters: int) -> int:
    """The largest plausible ``model.safetensors`` for a network of ``parameters`` (float32
    or float64 values, int64 BatchNorm counters, header)."""
    return min(MAX_WEIGHTS_BYTES, 8 * parameters + WEIGHTS_SLACK_BYTES)
