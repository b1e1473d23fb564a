"""View-first streaming on the CPU: how soon the slice in view is final, and what streaming costs.

On a CT-like volume (the geometry of ``bench/synthetic_ct.py`` scaled to ``--shape``, default
96 x 256 x 256, i.e. 300 x 512 x 512 scaled to run in a few minutes on 2 cores), for

* the bundled 3D model (sliding window, default window and overlap), and
* a 2D U-Net (``ModelSpec(base_width=16, depth=4)``, random weights, BatchNorm statistics
  measured on the volume; slices along k),

it runs ``predict_volume`` without a focus (today's path) and with ``focus`` = the centre voxel
and ``focus_axis`` 0 (the axial slice in view), interleaved ``--repeats`` times, and prints:

* ``first part``  - seconds to the first partial result;
* ``slice ready`` - seconds until the partial results cover the whole slice in view;
* ``box ready``   - seconds until they cover the box a view zoomed 4x around the cursor shows
                    (a quarter of the slice's width and height, centred on the focus);
* ``total``       - seconds to the returned prediction, with and without streaming, and the
                    overhead of streaming (best of the repeats);
* ``same``        - whether the streamed prediction's labels equal the plain run's;
* the same for a zero network of each kind (``machinery``: no convolutions, only
  normalisation, ordering, blending, partial labels), which bounds what streaming itself
  costs on a machine too busy to time a few per cent of the model reliably.

Times are wall clock (best of the repeats) and process CPU seconds (all threads).

Run: ``nice -n 15 .venv/bin/python bench/streaming_bench.py [--threads 2] [--shape 96 256 256]
[--repeats 1] [--only 2d|3d] [--focus-k K]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.full_size_bench import ct_like  # noqa: E402
from unet_engine.model.checkpoint import ModelCard, load_checkpoint  # noqa: E402
from unet_engine.devices import set_cpu_threads  # noqa: E402
from unet_engine.inference.predict import predict_volume, window_size  # noqa: E402
from unet_engine.model.network import ModelSpec, build_model  # noqa: E402
from unet_engine.paths import BUNDLED_MODELS  # noqa: E402
from unet_engine.model.preprocessing import prepare_image  # noqa: E402
from unet_engine.progress import run_generator  # noqa: E402
from unet_engine.inference.streaming import PartialProgress  # noqa: E402
from unet_engine.volume import Volume  # noqa: E402


def model_2d(vol: Volume) -> tuple[torch.nn.Module, ModelCard]:
    """A 2D U-Net with random weights and BatchNorm statistics measured on ``vol``."""
    spec = ModelSpec(base_width=16, depth=4, num_classes=3)
    card = ModelCard(spec=spec, preprocessing={"mode": "ct"})
    torch.manual_seed(0)
    model = build_model(spec).train()
    x = torch.from_numpy(np.ascontiguousarray(prepare_image(vol, card)[:: max(1, vol.shape[0] // 8)]))[:, None]
    with torch.no_grad():
        for s in range(0, len(x), 4):
            model(x[s : s + 4])
    return model.eval(), card


class Zero(torch.nn.Module):
    """Zero logits: the pipeline without the network."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.classes = classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros((x.shape[0], self.classes, *x.shape[2:]), dtype=x.dtype)


def plain(model: Any, card: ModelCard, vol: Volume) -> tuple[np.ndarray, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    pred = run_generator(predict_volume(model, card, vol, device="cpu"))
    plain.cpu = time.process_time() - c0  # type: ignore[attr-defined]
    return pred.labels, time.perf_counter() - t0


def streamed(model: Any, card: ModelCard, vol: Volume, focus: tuple[int, int, int]) -> tuple[np.ndarray, dict[str, float]]:
    """Labels and times (first part, slice ready, total) of a run focused on ``focus`` (axial)."""
    plane = np.zeros(vol.shape[1:], bool)
    half = (vol.shape[1] // 8, vol.shape[2] // 8)  # a view zoomed 4x shows a quarter of each side
    box = (slice(max(0, focus[1] - half[0]), focus[1] + half[0]), slice(max(0, focus[2] - half[1]), focus[2] + half[1]))
    marks: dict[str, float] = {}
    t0, c0 = time.perf_counter(), time.process_time()

    def on(p: Any) -> None:
        if not isinstance(p, PartialProgress) or p.partial is None:
            return
        now = time.perf_counter() - t0
        marks.setdefault("first", now)
        r = p.partial.region
        if r[0].start <= focus[0] < r[0].stop:
            plane[r[1], r[2]] = True
            if "box" not in marks and plane[box].all():
                marks["box"] = now
            if "ready" not in marks and plane.all():
                marks["ready"] = now

    pred = run_generator(predict_volume(model, card, vol, device="cpu", focus=focus, focus_axis=0), on)
    marks["total"] = time.perf_counter() - t0
    marks["cpu"] = time.process_time() - c0
    return pred.labels, marks


def bench(name: str, model: Any, card: ModelCard, vol: Volume, focus: tuple[int, int, int], repeats: int) -> None:
    best_plain, best, cpu_plain = float("inf"), dict[str, float](), float("inf")
    same = True
    plain(model, card, Volume(vol.array[:8], spacing=vol.spacing, modality="CT"))  # warm-up (allocator, prepared model)
    for _ in range(repeats):
        ref, t = plain(model, card, vol)
        best_plain, cpu_plain = min(best_plain, t), min(cpu_plain, plain.cpu)  # type: ignore[attr-defined]
        labels, marks = streamed(model, card, vol, focus)
        same &= bool(np.array_equal(labels, ref))
        if not best or marks["total"] < best["total"]:
            best = marks
    extra = f" window {window_size(card, vol.shape, torch.device('cpu'))}" if card.spec.dims == 3 else ""
    print(f"{name}{extra}: first part {best['first']:.2f} s · box in view (4x zoom) ready {best['box']:.2f} s · "
          f"slice ready {best['ready']:.2f} s · "
          f"total {best['total']:.2f} s streamed vs {best_plain:.2f} s plain "
          f"(overhead {100 * (best['total'] / best_plain - 1):+.1f} %; CPU {best['cpu']:.1f} vs {cpu_plain:.1f} s) "
          f"· same labels: {same}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shape", type=int, nargs=3, default=(96, 256, 256))
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--only", choices=("2d", "3d"), default=None)
    ap.add_argument("--focus-k", type=int, default=None, help="slice in view (default: the middle)")
    args = ap.parse_args()
    set_cpu_threads(args.threads)
    vol = ct_like(tuple(args.shape))
    k = vol.shape[0] // 2 if args.focus_k is None else args.focus_k
    focus = (k, vol.shape[1] // 2, vol.shape[2] // 2)
    print(f"volume {vol.shape} int16, spacing {tuple(round(s, 2) for s in vol.spacing)}, {args.threads} threads, "
          f"focus {focus} (axial)", flush=True)
    if args.only in (None, "2d"):
        model, card = model_2d(vol)
        bench("2D U-Net (base 16, depth 4)", model, card, vol, focus, args.repeats)
        bench("2D machinery (zero network)", Zero(3), card, vol, focus, args.repeats)
    if args.only in (None, "3d"):
        model, card = load_checkpoint(BUNDLED_MODELS / "default", device="cpu")
        bench("bundled 3D model", model, card, vol, focus, args.repeats)
        bench("3D machinery (zero network)", Zero(3), card, vol, focus, args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
