"""3D inference on a CT-sized volume on the CPU: SegLoop's ``predict_volume`` vs MONAI's
``sliding_window_inference``, same network and weights, in one process.

1. Speed: the bundled default model (3D U-Net, training patch 40x56x40) on a CT-like volume
   (the geometry of ``bench/synthetic_ct.py`` scaled to ``--shape``, default 96x256x256):
   * ``segloop``         - ``predict_volume(model, card, volume, device="cpu")``: normalisation,
                           sliding window with the default window (``window_size``: the training
                           patch grown to ~1 M voxels) and overlap, labels on the host;
   * ``segloop+unc``     - the same, then reading ``Prediction.uncertainty`` (what the app shows);
   * ``monai``           - ``sliding_window_inference`` over the normalised image (normalisation
                           timed too), ROI = the training patch, overlap 0.25 (MONAI's default),
                           ``mode="gaussian"``, sw_batch 1, the network as loaded (eval mode),
                           ``torch.inference_mode``, argmax of the blended logits;
   * ``monai-fused``     - the same with SegLoop's prepared network (BatchNorm folded,
                           channels-last): separates the windowing from the network preparation.
   Best of ``--repeats`` interleaved runs, wall clock and process CPU time (all threads);
   agreement with ``monai`` as voxels equal and Dice per label (the model is a hippocampus
   model: on a CT its labels are arbitrary, so this is agreement, not accuracy).
2. Accuracy on real data (``--real``; ~10 CPU-minutes more): the 36 hippocampus validation cases as a
   mosaic (``bench/hippo_mosaic.py``; margin 0 = cells fit the cases, margin 12 = cases
   centred in bigger cells so windows do not line up with them), Dice against the ground
   truth per label for SegLoop's default, SegLoop's previous setting (training patch, overlap
   0.5) and MONAI at overlap 0.25 and 0.5.
3. Memory (``--memory``): peak resident memory that ``predict_volume`` adds on a full
   300x512x512 int16 CT (a child process; ``--memory-model tiny`` = a 3D U-Net of base width 2
   so it takes seconds, ``bundled`` = the default model, a few minutes), reading labels and
   uncertainty.

Run: ``nice -n 15 .venv/bin/python bench/full_size_bench.py [--threads 2] [--shape 96 256 256]
[--repeats 1] [--real] [--memory [tiny|bundled]]``; part 1 alone takes ~3-5 minutes on 2
cores. Needs MONAI (a bench-only dependency, not a runtime one).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.synthetic_ct import SHAPE as CT_SHAPE, SPACING as CT_SPACING  # noqa: E402
from unet_engine.model.checkpoint import ModelCard, load_checkpoint  # noqa: E402
from unet_engine.devices import set_cpu_threads  # noqa: E402
from unet_engine.inference.predict import predict_volume  # noqa: E402
from unet_engine.inference.runner import Runner, patch_size, prepare_model, run_patches, window_size  # noqa: E402
from unet_engine.metrics import dice  # noqa: E402
from unet_engine.model.network import ModelSpec, build_model  # noqa: E402
from unet_engine.paths import BUNDLED_MODELS  # noqa: E402
from unet_engine.model.preprocessing import prepare_image  # noqa: E402
from unet_engine.progress import run_generator  # noqa: E402
from unet_engine.inference.sliding_window import DEFAULT_OVERLAP  # noqa: E402
from unet_engine.volume import Volume  # noqa: E402

Clock = tuple[float, float]  # (wall, process CPU) seconds


def ct_like(shape: tuple[int, int, int], seed: int = 0) -> Volume:
    """The body, organs and spine of ``synthetic_ct.make_ct`` at ``shape`` (int16, built slab by slab)."""
    rng = np.random.default_rng(seed)
    f = [full / s for full, s in zip(CT_SHAPE, shape)]  # voxel -> synthetic_ct voxel
    j, i = np.ogrid[: shape[1], : shape[2]]
    j, i = (j + 0.5) * f[1], (i + 0.5) * f[2]
    body = ((j - 256) / 200.0) ** 2 + ((i - 256) / 230.0) ** 2 < 1.0
    spine = ((j - 380) / 25.0) ** 2 + ((i - 256) / 25.0) ** 2 < 1.0
    vol = np.empty(shape, np.int16)
    for k0 in range(0, shape[0], 16):
        k = (np.arange(k0, min(shape[0], k0 + 16))[:, None, None] + 0.5) * f[0]
        slab = np.where(body, 40, -1000).astype(np.int16) * np.ones((len(k), 1, 1), np.int16)
        slab[np.broadcast_to(((k - 200) / 120.0) ** 2 + ((j - 220) / 80.0) ** 2 + ((i - 180) / 70.0) ** 2 < 1.0, slab.shape)] = 90
        slab[np.broadcast_to(((k - 180) / 90.0) ** 2 + ((j - 260) / 50.0) ** 2 + ((i - 330) / 45.0) ** 2 < 1.0, slab.shape)] = 60
        slab[np.broadcast_to(spine, slab.shape)] = 700
        slab += rng.normal(0, 25, slab.shape).astype(np.int16)
        vol[k0 : k0 + len(k)] = slab
    spacing = tuple(s * fi for s, fi in zip(CT_SPACING, f))
    return Volume(vol, spacing=spacing, modality="CT")


def monai_labels(net: torch.nn.Module, card: ModelCard, vol: Volume, overlap: float = 0.25,
                 image: np.ndarray | None = None) -> np.ndarray:
    """MONAI's Gaussian sliding window (ROI = training patch, sw_batch 1) -> labels."""
    from monai.inferers import sliding_window_inference

    roi = tuple(int(p) for p in card.training["patch_size"])
    x = torch.from_numpy(np.ascontiguousarray(prepare_image(vol, card) if image is None else image))[None, None]
    with torch.inference_mode():
        logits = sliding_window_inference(x, roi, 1, net, overlap=overlap, mode="gaussian")
        return logits.argmax(dim=1)[0].to(torch.uint8).numpy()


def timed(fn: Callable[[], np.ndarray]) -> tuple[np.ndarray, Clock]:
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, (time.perf_counter() - w, time.process_time() - c)


def speed(model: torch.nn.Module, card: ModelCard, vol: Volume, repeats: int) -> None:
    """Part 1: the table of times, ratios and agreement."""
    fused = prepare_model(model, torch.device("cpu"), 3)

    def ours(unc: bool) -> np.ndarray:
        pred = run_generator(predict_volume(model, card, vol, device="cpu"))
        if unc:
            _ = pred.uncertainty
        return pred.labels

    methods: dict[str, Callable[[], np.ndarray]] = {
        "segloop": lambda: ours(False),
        "segloop+unc": lambda: ours(True),
        "monai": lambda: monai_labels(model, card, vol),
        "monai-fused": lambda: monai_labels(fused, card, vol),
    }
    win = window_size(card, vol.shape, torch.device("cpu"))
    print(f"\n## 1. speed: CT-like {'x'.join(map(str, vol.shape))} int16, segloop window {'x'.join(map(str, win))} "
          f"overlap {DEFAULT_OVERLAP}, monai ROI {'x'.join(map(str, card.training['patch_size']))} overlap 0.25", flush=True)
    best: dict[str, Clock] = {k: (float("inf"), float("inf")) for k in methods}
    labels: dict[str, np.ndarray] = {}
    for r in range(repeats):
        for k, fn in methods.items():
            labels[k], (w, c) = timed(fn)
            best[k] = (min(best[k][0], w), min(best[k][1], c))
        print(f"run {r + 1}/{repeats}: " + ", ".join(f"{k} {best[k][0]:.1f} s" for k in methods), flush=True)
    ref = labels["monai"]
    print("\n| method | wall s | CPU s | monai / this (wall) | monai / this (CPU) | voxels equal to monai "
          "| Dice vs monai (1, 2) |")
    print("|---|---|---|---|---|---|---|")
    for k in methods:
        d = ", ".join(f"{dice(labels[k], ref, lab):.4f}" for lab in (1, 2))
        print(f"| {k} | {best[k][0]:.2f} | {best[k][1]:.2f} | {best['monai'][0] / best[k][0]:.2f}x | "
              f"{best['monai'][1] / best[k][1]:.2f}x | {(labels[k] == ref).mean() * 100:.3f} % | {d} |")
    print(f"label voxels (1, 2) segloop: {(labels['segloop'] == 1).sum()}, {(labels['segloop'] == 2).sum()}; "
          f"monai: {(ref == 1).sum()}, {(ref == 2).sum()}")


def real(model: torch.nn.Module, card: ModelCard) -> None:
    """Part 2: Dice against the ground truth on the hippocampus mosaics."""
    from bench.hippo_mosaic import build_mosaic, load_cases, mosaic_dice, val_case_ids

    cases = load_cases(val_case_ids(card))
    print("\n## 2. real data: 36 hippocampus validation cases as a mosaic, Dice vs ground truth (mean over cases)")
    print("\n| mosaic | method | window | overlap | CPU s | Dice ant | Dice post | mean |")
    print("|---|---|---|---|---|---|---|---|")
    for margin in (0, 12):
        m = build_mosaic(cases, card, margin=margin)
        shape = m.image.shape
        train = patch_size(card, shape)
        default = window_size(card, shape, torch.device("cpu"))

        def core(window: tuple[int, ...], overlap: float) -> Callable[[], np.ndarray]:
            def run() -> np.ndarray:
                runner = Runner(model, torch.device("cpu"), 3, 1, False)
                gen = run_patches(runner, m.image, None, card, None, overlap=overlap, window=window)
                return run_generator(gen).labels.numpy()
            return run

        rows = [
            ("segloop (default)", default, DEFAULT_OVERLAP, core(default, DEFAULT_OVERLAP)),
            ("segloop (previous: training patch)", train, 0.5, core(train, 0.5)),
            ("monai", train, 0.25, lambda: monai_labels(model, card, Volume(m.image), 0.25, m.image)),
            ("monai", train, 0.5, lambda: monai_labels(model, card, Volume(m.image), 0.5, m.image)),
        ]
        for name, win, ov, fn in rows:
            lab, (_, c) = timed(fn)
            d = mosaic_dice(lab, m)
            print(f"| {'x'.join(map(str, shape))}, margin {margin} | {name} | {'x'.join(map(str, win))} | {ov} | {c:.1f} | "
                  f"{d[1]:.4f} | {d[2]:.4f} | {np.mean(list(d.values())):.4f} |", flush=True)


def memory_child(which: str, threads: int) -> None:
    """Part 3, in a child process: print JSON with the peak RSS predict_volume adds on a 300x512x512 CT."""
    set_cpu_threads(threads)
    vol = ct_like((300, 512, 512))
    if which == "tiny":
        spec = ModelSpec(dims=3, base_width=2, depth=3)
        torch.manual_seed(0)
        model, card = build_model(spec).eval(), ModelCard(spec=spec, training={"patch_size": [40, 56, 40]})
    else:
        model, card = load_checkpoint(BUNDLED_MODELS / "default", "cpu")
    with open("/proc/self/statm") as fh:
        rss_before = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t = time.perf_counter()
    pred = run_generator(predict_volume(model, card, vol, device="cpu"))
    _ = pred.uncertainty
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"model": which, "seconds": seconds, "rss_before": rss_before, "peak_before": peak_before, "peak": peak,
                      "window": list(pred.window or ()), "image_bytes": vol.array.nbytes}))


def memory(which: str, threads: int) -> None:
    """Part 3: run :func:`memory_child` and report."""
    out = subprocess.run([sys.executable, __file__, "--memory-child", which, "--threads", str(threads)],
                         check=True, capture_output=True, text=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    gib = 1 << 30
    print(f"\n## 3. memory: predict_volume on a 300x512x512 int16 CT ({r['image_bytes'] / gib:.2f} GiB), {r['model']} model, "
          f"window {'x'.join(map(str, r['window']))}, labels + uncertainty read: {r['seconds']:.1f} s wall")
    print(f"peak RSS {r['peak'] / gib:.2f} GiB; {(r['peak'] - r['rss_before']) / gib:.2f} GiB above the process before "
          f"the call (image and model loaded; the peak before the call was {r['peak_before'] / gib:.2f} GiB)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shape", type=int, nargs=3, default=[96, 256, 256])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--real", action=argparse.BooleanOptionalAction, default=False, help="part 2 (hippocampus mosaics)")
    ap.add_argument("--memory", nargs="?", const="tiny", choices=["tiny", "bundled"], default=None, help="part 3")
    ap.add_argument("--memory-child", choices=["tiny", "bundled"], default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.threads)
        return 0
    threads = set_cpu_threads(args.threads)
    import monai

    model, card = load_checkpoint(BUNDLED_MODELS / "default", "cpu")
    print(f"{card.name} ({card.version}); torch {torch.__version__}, MONAI {monai.__version__}, {threads} thread(s), "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    vol = ct_like(tuple(args.shape))
    for fn in (lambda: run_generator(predict_volume(model, card, Volume(vol.array[:48, :128, :128]), device="cpu")),
               lambda: monai_labels(model, card, Volume(vol.array[:48, :128, :128]))):
        fn()  # warm-up: model preparation, imports, allocator
    speed(model, card, vol, args.repeats)
    if args.real:
        real(model, card)
    if args.memory:
        memory(args.memory, threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
