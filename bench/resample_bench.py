"""Inference with a model that resamples to its own spacing: the old host path vs the new one.

A model card with ``target_spacing`` runs on the resampled grid. Both paths, one process:

* ``old``: the previous ``predict_volume`` for such a model: the whole image normalised and
  resampled on the host (``scipy.ndimage.zoom``, one thread), the sliding window on the
  resampled grid, the whole float32 ``[C, *input]`` probability volume brought back with
  ``resample_back`` on the host, labels and entropy from it;
* ``new``: today's ``predict_volume``: the image resampled on the device slab by slab, the
  probabilities brought back slab by slab straight into labels and entropy
  (:mod:`unet_engine.inference.resampling`); with a ``region`` only the part it needs.

Parts:

1. A CT-like ``--shape`` volume (default 300 x 512 x 512 int16, the body, organs and spine of
   ``bench/synthetic_ct.py``) at ``--spacing`` (default 1.5 x 0.7 x 0.7 mm, k j i), the
   bundled 3D U-Net's spec with random weights and BatchNorm statistics measured on the
   image (``--model random``, the default: the bundled hippocampus model labels a CT all
   background, which would make the agreement trivial; ``bundled``; ``tiny``: base width 2,
   seconds) with ``target_spacing`` ``--target`` (default 1.5 mm isotropic) and CT
   normalisation: wall time split into resample-in (statistics, normalisation,
   resampling) / network / resample-back + labels + entropy, peak RSS per phase and overall
   (above the process before the call; the kernel's high-water mark, reset per phase), peak
   device memory where CUDA exists, labels equal (% voxels) and Dice per label of the new
   path against the old. One run of each (the network takes most of the time); then (1b)
   the resampling steps alone, interleaved, best of ``--repeats``, on the network's output.
2. A region (``--region``, default a 64 x 160 x 160 box on the organs): the new region run
   (only the part it needs is resampled) vs the new whole run cut there (the old path always
   resampled and ran the whole image): time and labels equal; the same for a pointwise network
   (a 1x1x1 convolution), whose output cannot depend on where the windows sit.
3. Real cases: the spleen CT (``../shared/data/formats/ct_spleen_nifti``, else the test fixture),
   the random network calibrated on it, ``target_spacing`` 1.5 mm and (2.5, 1.6, 1.6) mm: old
   vs new labels; and the hippocampus test cases upsampled to 0.7 mm (image linear, label
   nearest) with the bundled model at ``target_spacing`` 1.0 mm (the spacing it was trained
   at): Dice against the manual labels, old and new.

Run: ``nice -n 15 .venv/bin/python bench/resample_bench.py [--threads 2] [--model random]
[--shape 300 512 512] [--repeats 3] [--skip-synthetic] [--skip-real] [--device cpu|cuda]``;
~6-8 minutes on 2 CPU cores (the two network runs of part 1 dominate).
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.full_size_bench import ct_like  # noqa: E402
from tests.model_helpers import Pointwise  # noqa: E402
from unet_engine.devices import choose_device, set_cpu_threads  # noqa: E402
from unet_engine.inference.predict import predict_volume  # noqa: E402
from unet_engine.inference.resampling import BackProjection, Resampler, resample_image  # noqa: E402
from unet_engine.inference.runner import Runner, device_image, estimate_batch_size, run_patches, window_size  # noqa: E402
from unet_engine.inference.tta import finalize  # noqa: E402
from unet_engine.io.volume_io import read_volume  # noqa: E402
from unet_engine.metrics import dice  # noqa: E402
from unet_engine.model.checkpoint import ModelCard, load_checkpoint  # noqa: E402
from unet_engine.model.network import ModelSpec, build_model, required_multiple  # noqa: E402
from unet_engine.model.preprocessing import (  # noqa: E402
    IntensityStats,
    apply_intensity,
    image_array,
    intensity_stats,
    prepare_image,
    resample_back,
    resample_to_spacing,
)
from unet_engine.paths import BUNDLED_MODELS  # noqa: E402
from unet_engine.progress import Progress, run_generator  # noqa: E402
from unet_engine.volume import Volume  # noqa: E402

GiB = float(1 << 30)
SPLEEN = [ROOT.parent / "shared" / "data" / "formats" / "ct_spleen_nifti" / "image.nii.gz",
          ROOT / "tests" / "data" / "io" / "ct_spleen_nifti" / "image.nii.gz"]
HIPPO = ROOT / "tests" / "data" / "hippocampus"


# ----- measuring ------------------------------------------------------------------------------


def _status(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024 / GiB
    return float("nan")


def _trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM (the peak RSS) to the current RSS
    except OSError:
        pass


class Phases:
    """Wall time and peak memory per phase of one run.

    ``mark(name)``: the current phase ends now; ``report(name)``: a progress report of phase
    ``name`` arrived, so the time since the previous report belongs to ``name`` (the first
    network batch is network time, not resampling). Peaks are taken and reset at each call.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        _trim()  # freed heap memory back to the OS: the baseline is what the process really holds
        self.base = _status("VmRSS")
        self.times: dict[str, float] = {}
        self.rss: dict[str, float] = {}
        self.gpu: dict[str, float] = {}
        self.current = "resample-in"
        self.start = self.t = self.last = time.perf_counter()
        _reset_peak()
        if device.type == "cuda":
            torch.cuda.synchronize()
            self.gpu_base = torch.cuda.memory_allocated() / GiB
            torch.cuda.reset_peak_memory_stats()

    def _peaks(self, phase: str) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.gpu[phase] = max(self.gpu.get(phase, 0.0), torch.cuda.max_memory_allocated() / GiB - self.gpu_base)
            torch.cuda.reset_peak_memory_stats()
        self.rss[phase] = max(self.rss.get(phase, 0.0), _status("VmHWM") - self.base)
        _reset_peak()

    def _switch(self, name: str, at: float) -> None:
        self.times[self.current] = self.times.get(self.current, 0.0) + at - self.t
        self.current, self.t = name, at

    def mark(self, name: str) -> None:
        self._peaks(self.current)
        self.last = time.perf_counter()
        if name != self.current:
            self._switch(name, self.last)

    def report(self, name: str) -> None:
        if name != self.current:
            self._switch(name, self.last)
        self._peaks(name)
        self.last = time.perf_counter()

    def end(self) -> "Phases":
        self.mark("end")
        self.total = time.perf_counter() - self.start
        return self


def new_phase(p: Progress) -> str:
    if "model's spacing" in p.message or p.message == "preparing image":
        return "resample-in"
    if "input grid" in p.message:
        return "back"
    return "network"


# ----- the two paths --------------------------------------------------------------------------


def old_in(raw: np.ndarray, stats: IntensityStats, spacing: tuple[float, ...], target: Any) -> np.ndarray:
    """The old resample-in: the whole image normalised, then ``ndimage.zoom`` on the host."""
    return resample_to_spacing(apply_intensity(raw, stats), spacing, target, order=1).astype(np.float32, copy=False)


def old_back(work_probs: torch.Tensor, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The old resample-back: the whole ``[C, *input]`` float32 volume, then labels and entropy."""
    probs = resample_back(work_probs.cpu().numpy(), shape, order=1)
    labels, unc = finalize(probs)
    return labels, unc, probs  # the old Prediction kept the float32 probabilities


def new_in(raw: np.ndarray, stats: IntensityStats, fwd: Resampler, dev: torch.device) -> np.ndarray:
    box = tuple(slice(0, n) for n in fwd.dst_shape)
    return run_generator(resample_image(lambda src: device_image(raw[src], stats, dev), fwd, box, dev))


def new_back(work_probs: torch.Tensor, back: Resampler) -> tuple[np.ndarray, np.ndarray]:
    proj = BackProjection(back, (0, 0, 0), tuple(slice(0, n) for n in back.dst_shape), work_probs)
    return run_generator(proj.finish())


def old_predict(model: torch.nn.Module, card: ModelCard, vol: Volume, dev: torch.device,
                phases: Phases | None = None) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """The previous ``predict_volume`` of a resampling 3D model (no region, no focus, no TTA):
    labels, uncertainty and the working-grid probabilities."""
    config = card.preprocess_config
    raw, _, modality = image_array(vol)
    work = old_in(raw, intensity_stats(raw, config, modality), vol.spacing, config.target_spacing)
    if phases:
        phases.mark("network")
    win = window_size(card, work.shape, dev)
    runner = Runner(model, dev, 3, estimate_batch_size(card.spec, (1, *win), dev), False, None)
    out = run_generator(run_patches(runner, work, None, card, None, window=win))
    if phases:
        phases.mark("back")
    labels, unc, probs = old_back(out.probs, vol.shape)
    del probs
    return labels, unc, out.probs


def new_predict(model: torch.nn.Module, card: ModelCard, vol: Volume, dev: torch.device,
                phases: Phases | None = None, **kwargs: Any) -> Any:
    def on(p: Any) -> None:
        if phases:
            phases.report(new_phase(p))

    return run_generator(predict_volume(model, card, vol, device=dev, **kwargs), on)


def resampling_card(card: ModelCard, target: tuple[float, float, float], mode: str | None = None) -> ModelCard:
    pre = {**card.preprocessing, "target_spacing": list(target)}
    if mode:
        pre["mode"] = mode
    return dataclasses.replace(card, preprocessing=pre)


def load_model(kind: str, calibrate: tuple[Volume, ModelCard] | None = None) -> tuple[torch.nn.Module, ModelCard]:
    """``bundled``: the default model; ``random``: its spec with random weights and BatchNorm
    statistics measured on ``calibrate`` (an image and a resampling card: labels that vary over
    the image, where the bundled hippocampus model labels a CT all background); ``tiny``: the
    same with a base width of 2."""
    model, card = load_checkpoint(BUNDLED_MODELS / "default", "cpu")
    if kind == "bundled":
        return model, card
    spec = card.spec if kind == "random" else ModelSpec(dims=3, base_width=2, depth=2, num_classes=3)
    card = dataclasses.replace(card, spec=spec)
    torch.manual_seed(0)
    net = build_model(spec).train()
    if calibrate is not None:
        for m in net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
                m.momentum = None  # a plain average over the calibration batches
        vol, rcard = calibrate
        image = prepare_image(vol, rcard)
        m = required_multiple(spec)
        patch = [max(m, min(n, p) // m * m) for n, p in zip(image.shape, (32, 64, 64))]
        rng = np.random.default_rng(0)
        with torch.no_grad():
            for _ in range(6):
                start = [int(rng.integers(0, max(1, n - p + 1))) for n, p in zip(image.shape, patch)]
                crop = image[tuple(slice(s, s + p) for s, p in zip(start, patch))]
                net(torch.from_numpy(np.ascontiguousarray(crop))[None, None])
    return net.eval(), card


def agreement(a: np.ndarray, b: np.ndarray, labels: int) -> str:
    d = ", ".join(f"{dice(a, b, lab):.4f}" for lab in range(1, labels))
    return f"{(a == b).mean() * 100:.4f} % equal, Dice per label {d}"


# ----- parts ----------------------------------------------------------------------------------


def synthetic(args: argparse.Namespace, dev: torch.device) -> None:
    ct = ct_like(tuple(args.shape))
    vol = Volume(ct.array, spacing=tuple(args.spacing), modality="CT")
    _, card = load_model("bundled")
    model, card = load_model(args.model, (vol, resampling_card(card, (args.target,) * 3, "ct")))
    card = resampling_card(card, (args.target,) * 3, "ct")
    print(f"\n## 1. CT-like {'x'.join(map(str, vol.shape))} int16 at {vol.spacing} mm, target {args.target} mm, "
          f"model {args.model}, device {dev}, {torch.get_num_threads()} threads", flush=True)
    new_predict(model, card, Volume(ct.array[:24, :96, :96], spacing=vol.spacing, modality="CT"), dev)  # warm-up
    old_ph = Phases(dev)
    old_labels, old_unc, work_probs = old_predict(model, card, vol, dev, old_ph)
    old_ph.end()
    new_ph = Phases(dev)
    pred = new_predict(model, card, vol, dev, new_ph)
    new_ph.end()
    rows = [("old (host, whole volume)", old_ph), ("new (device, slabs)", new_ph)]
    print("\nOne run each, network included (the machine's load moves single runs; part 1b repeats the resampling):")
    print("\n| path | resample-in s | network s | back + labels + entropy s | total s | peak RSS GiB "
          "(in / network / back) | peak device GiB |")
    print("|---|---|---|---|---|---|---|")
    for name, ph in rows:
        rss = " / ".join(f"{ph.rss.get(k, 0):.2f}" for k in ("resample-in", "network", "back"))
        gpu = f"{max(ph.gpu.values()):.2f}" if ph.gpu else "n/a"
        print(f"| {name} | {ph.times.get('resample-in', 0):.2f} | {ph.times.get('network', 0):.2f} | "
              f"{ph.times.get('back', 0):.2f} | {ph.total:.2f} | {max(ph.rss.values()):.2f} ({rss}) | {gpu} |")
    c = card.spec.num_classes
    share = ", ".join(f"{v * 100:.1f} %" for v in np.bincount(old_labels.ravel(), minlength=c) / old_labels.size)
    print(f"\nlabels per class (old): {share}; mean uncertainty {old_unc.mean():.3f}")
    print(f"new vs old labels: {agreement(pred.labels, old_labels, c)}; "
          f"uncertainty max |diff| {np.abs(pred.uncertainty - old_unc).max():.2e}", flush=True)
    t = time.perf_counter()
    _ = pred.probabilities
    print(f"reading Prediction.probabilities (float16, on demand): {time.perf_counter() - t:.2f} s", flush=True)
    whole = pred.labels
    del old_labels, old_unc, pred
    phases_only(args, card, vol, work_probs, dev)
    region(args, model, card, vol, whole, new_ph.total, dev)


def phases_only(args: argparse.Namespace, card: ModelCard, vol: Volume, work_probs: torch.Tensor,
                dev: torch.device) -> None:
    """Part 1b: the resampling steps alone, interleaved, best of ``--repeats``, on the network's real output."""
    config = card.preprocess_config
    raw, _, modality = image_array(vol)
    stats = intensity_stats(raw, config, modality)
    fwd, back = Resampler(vol.shape, work_probs.shape[1:]), Resampler(work_probs.shape[1:], vol.shape)
    steps: dict[str, Callable[[], Any]] = {
        "in: old": lambda: old_in(raw, stats, vol.spacing, config.target_spacing),
        "in: new": lambda: new_in(raw, stats, fwd, dev),
        "back: old": lambda: old_back(work_probs, vol.shape),
        "back: new": lambda: new_back(work_probs, back),
    }
    best: dict[str, float] = {}
    peak: dict[str, float] = {}
    out: dict[str, Any] = {}
    for _ in range(args.repeats):
        for name, fn in steps.items():
            ph = Phases(dev)
            out[name] = fn()
            ph.end()
            best[name] = min(best.get(name, float("inf")), ph.total)
            peak[name] = max(ph.rss.values())
            out[name] = out[name][0] if name.startswith("back") else out[name]
    print(f"\n### 1b. resampling steps alone, best of {args.repeats} (working grid {tuple(work_probs.shape)})")
    print("\n| step | old s | new s | old / new | peak RSS GiB old | new |")
    print("|---|---|---|---|---|---|")
    for step in ("in", "back"):
        o, n = best[f"{step}: old"], best[f"{step}: new"]
        print(f"| {step} | {o:.2f} | {n:.2f} | {o / n:.1f}x | {peak[f'{step}: old']:.2f} | {peak[f'{step}: new']:.2f} |")
    diff = np.abs(out["in: old"] - out["in: new"]).max()
    print(f"\nresampled image max |new - old| {diff:.2e}; labels from the same network output: "
          f"{agreement(out['back: new'], out['back: old'], card.spec.num_classes)}", flush=True)


def region(args: argparse.Namespace, model: torch.nn.Module, card: ModelCard, vol: Volume, whole: np.ndarray,
           whole_seconds: float, dev: torch.device) -> None:
    box = tuple(slice(a, b) for a, b in zip(args.region[0::2], args.region[1::2]))
    ph = Phases(dev)
    pred = new_predict(model, card, vol, dev, ph, region=box)
    ph.end()
    cut = whole[box]
    changed = int((pred.labels != cut).sum())
    print(f"\n## 2. region {box}: new {ph.total:.2f} s (resample-in {ph.times.get('resample-in', 0):.2f}, network "
          f"{ph.times.get('network', 0):.2f}, back {ph.times.get('back', 0):.2f}), peak RSS {max(ph.rss.values()):.2f} GiB; "
          f"the old path ran the whole volume ({whole_seconds:.2f} s with the new code)")
    print(f"region vs whole cut: {agreement(pred.labels, cut, card.spec.num_classes)} ({changed} voxels differ)", flush=True)
    point = Pointwise().eval()  # no spatial context: window placement cannot matter, only the resampling
    whole_p = new_predict(point, card, vol, dev)
    part_p = new_predict(point, card, vol, dev, region=box)
    diff = (part_p.probabilities_tensor() - whole_p.probabilities_tensor()[(slice(None), *box)]).abs().max()
    print(f"a pointwise network (1x1x1 convolution): region vs whole cut {agreement(part_p.labels, whole_p.labels[box], 3)}, "
          f"probabilities max |diff| {float(diff):.1e}", flush=True)




def real(dev: torch.device) -> None:
    print("\n## 3. real cases", flush=True)
    path = next(p for p in SPLEEN if p.exists())
    spleen = read_volume(path)
    model, card = load_model("bundled")
    for target in ((1.5, 1.5, 1.5), (2.5, 1.6, 1.6)):
        net, rc = load_model("random", (spleen, resampling_card(card, target)))
        rc = resampling_card(rc, target)
        t = time.perf_counter()
        old, _, _ = old_predict(net, rc, spleen, dev)
        t_old = time.perf_counter() - t
        t = time.perf_counter()
        new = new_predict(net, rc, spleen, dev).labels
        t_new = time.perf_counter() - t
        share = ", ".join(f"{v * 100:.0f} %" for v in np.bincount(old.ravel(), minlength=3) / old.size)
        print(f"- spleen CT {'x'.join(map(str, spleen.shape))} at {tuple(round(s, 2) for s in spleen.spacing)} mm -> {target}, "
              f"random network of the bundled spec (labels {share}): old {t_old:.2f} s, new {t_new:.2f} s; "
              f"new vs old {agreement(new, old, 3)}", flush=True)
    rc = resampling_card(card, (1.0, 1.0, 1.0))
    print("\n| hippocampus case (upsampled to 0.7 mm) | shape | Dice old (ant, post) | Dice new | voxels equal "
          "| central region vs whole cut: equal, Dice |")
    print("|---|---|---|---|---|---|")
    dice_old, dice_new, equal, reg_equal = [], [], [], []
    for img_path in sorted((HIPPO / "imagesTr").glob("*.nii.gz")):
        img, lab = read_volume(img_path), read_volume(HIPPO / "labelsTr" / img_path.name)
        zoom = [s / 0.7 for s in img.spacing]
        up = ndimage.zoom(np.asarray(img.array, np.float32), zoom, order=1, grid_mode=True, mode="nearest")
        ref = ndimage.zoom(np.asarray(lab.array, np.uint8), zoom, order=0, grid_mode=True, mode="nearest")
        vol = Volume(up, spacing=(0.7, 0.7, 0.7), modality=img.modality)
        old, _, _ = old_predict(model, rc, vol, dev)
        new = new_predict(model, rc, vol, dev).labels
        box = tuple(slice(n // 4, n - n // 4) for n in up.shape)
        part = new_predict(model, rc, vol, dev, region=box).labels
        do, dn = [dice(old, ref, k) for k in (1, 2)], [dice(new, ref, k) for k in (1, 2)]
        dice_old.append(do)
        dice_new.append(dn)
        equal.append((old == new).mean())
        reg_equal.append((part == new[box]).mean())
        dr = ", ".join(f"{dice(part, new[box], k):.4f}" for k in (1, 2))
        print(f"| {img_path.name.split('.')[0]} | {'x'.join(map(str, up.shape))} | {do[0]:.4f}, {do[1]:.4f} | "
              f"{dn[0]:.4f}, {dn[1]:.4f} | {equal[-1] * 100:.4f} % | {reg_equal[-1] * 100:.3f} %, {dr} |", flush=True)
    mo, mn = np.mean(dice_old, axis=0), np.mean(dice_new, axis=0)
    print(f"| mean | | {mo[0]:.4f}, {mo[1]:.4f} | {mn[0]:.4f}, {mn[1]:.4f} | {np.mean(equal) * 100:.4f} % "
          f"| {np.mean(reg_equal) * 100:.3f} % |")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", choices=("bundled", "random", "tiny"), default="random")
    ap.add_argument("--shape", type=int, nargs=3, default=(300, 512, 512))
    ap.add_argument("--spacing", type=float, nargs=3, default=(1.5, 0.7, 0.7))
    ap.add_argument("--target", type=float, default=1.5)
    ap.add_argument("--region", type=int, nargs=6, default=(118, 182, 140, 300, 110, 270), help="k0 k1 j0 j1 i0 i1")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-synthetic", action="store_true")
    ap.add_argument("--skip-real", action="store_true")
    args = ap.parse_args(argv)
    set_cpu_threads(args.threads)
    dev = choose_device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {dev}")
    if not args.skip_synthetic:
        synthetic(args, dev)
    if not args.skip_real:
        real(dev)


if __name__ == "__main__":
    main()
