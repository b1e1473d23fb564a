"""Inference throughput on the CPU: SegLoop's predict_volume vs two common baselines.

Same network and weights for every method, in one process (random weights with BatchNorm
statistics measured on the data, or the bundled default model's real weights for the
1.9 M-param case):

* ``ours``      - ``unet_engine.inference.predict.predict_volume`` (percentile/z-score preprocessing,
                  BatchNorm folded, channels-last, batched slices, inference_mode, softmax +
                  labels + normalised entropy + fp16 probabilities for every voxel);
* ``per-slice`` - the tutorial loop: one slice at a time (batch 1), fp32, NCHW, min/max
                  normalisation, ``torch.no_grad``, softmax + argmax;
* ``monai``     - ``monai.inferers.sliding_window_inference`` used the way ``SliceInferer``
                  does for a 2D network on a volume (ROI = one whole padded slice, so no
                  overlap is computed; ``sw_batch_size`` = our batch), NCHW network, no_grad.

Figures: slices/s, voxels/s, GFLOP/s (network FLOPs from ``torch.utils.flop_counter``)
beside the CPU's fp32 peak estimated from a 4096^2 matmul. The machine is shared, so each
method runs ``--repeats`` times interleaved with the others and the best run counts.
Labels are checked against ``ours`` on the same normalised input (the per-slice loop is
re-run, untimed, with our normalisation for that check since min/max input differs).

Run: ``.venv/bin/python bench/inference_bench.py [--repeats 5] [--threads N] [--quick] [--cases hippo32 hippo16 brain large]``
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from unet_engine.model.checkpoint import ModelCard, load_checkpoint  # noqa: E402
from unet_engine.devices import set_cpu_threads  # noqa: E402
from unet_engine.inference.predict import predict_volume  # noqa: E402
from unet_engine.model.network import ModelSpec, UNet, build_model, count_parameters, required_multiple  # noqa: E402
from unet_engine.paths import BUNDLED_MODELS  # noqa: E402
from unet_engine.model.preprocessing import pad_to_multiple, prepare_image  # noqa: E402
from unet_engine.progress import run_generator  # noqa: E402
from unet_engine.volume import Volume  # noqa: E402

DATA = ROOT.parent / "shared" / "data"


# ----- data -----------------------------------------------------------------------------------


def read(path: Path) -> Volume:
    try:
        from unet_engine.io.volume_io import read_volume

        return read_volume(path)
    except ImportError:
        import SimpleITK as sitk

        if path.is_dir():
            r = sitk.ImageSeriesReader()
            r.SetFileNames(r.GetGDCMSeriesFileNames(str(path)))
            img = r.Execute()
        else:
            img = sitk.ReadImage(str(path))
        return Volume(sitk.GetArrayFromImage(img), spacing=tuple(reversed(img.GetSpacing())))


def hippocampus_cases(n: int) -> list[Volume]:
    files = sorted(glob.glob(str(DATA / "hippocampus" / "imagesTr" / "*.nii.gz")))[:n]
    if not files:
        files = sorted(glob.glob(str(ROOT / "tests" / "data" / "hippocampus" / "imagesTr" / "*.nii.gz")))
    return [read(Path(f)) for f in files]


# ----- methods --------------------------------------------------------------------------------


def per_slice_loop(model: torch.nn.Module, image: np.ndarray, minmax: bool = True) -> np.ndarray:
    """The tutorial loop: batch 1, fp32, NCHW, min/max normalisation per slice."""
    out = np.zeros(image.shape, np.uint8)
    with torch.no_grad():
        for k in range(image.shape[0]):
            sl = image[k].astype(np.float32)
            if minmax:
                sl = (sl - sl.min()) / (sl.max() - sl.min() + 1e-8)
            logits = model(torch.from_numpy(sl)[None, None])
            out[k] = torch.softmax(logits, dim=1).argmax(dim=1)[0].numpy()
    return out


def monai_sliding(model: torch.nn.Module, vol: Volume, card: ModelCard, sw_batch: int) -> np.ndarray:
    """MONAI's sliding_window_inference over slices (what SliceInferer does)."""
    from monai.inferers import sliding_window_inference

    image = prepare_image(vol, card)
    padded, crop = pad_to_multiple(image, required_multiple(card.spec), axes=(1, 2), mode="edge")
    x = torch.from_numpy(np.ascontiguousarray(padded))[None, None]  # [1, 1, K, H, W]

    def predictor(t: torch.Tensor) -> torch.Tensor:  # [B, 1, 1, H, W] -> 2D net -> [B, C, 1, H, W]
        return model(t[:, :, 0]).unsqueeze(2)

    with torch.no_grad():
        logits = sliding_window_inference(x, (1, *padded.shape[1:]), sw_batch, predictor, overlap=0.25)
        labels = torch.softmax(logits, dim=1).argmax(dim=1)[0].numpy().astype(np.uint8)
    return labels[crop]


def ours(model: torch.nn.Module, vol: Volume, card: ModelCard):
    return run_generator(predict_volume(model, card, vol))


# ----- helpers --------------------------------------------------------------------------------


def matmul_peak(n: int = 4096, reps: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_time(lambda: a @ b) for _ in range(reps))
    return 2 * n**3 / best / 1e9


#: "cpu": time.process_time (robust on a shared box, meaningful with 1 thread); "wall": perf_counter
CLOCK = ["wall"]


def _time(fn) -> float:
    clock = time.process_time if CLOCK[0] == "cpu" else time.perf_counter
    t = clock()
    fn()
    return clock() - t


def flops_per_slice(model: torch.nn.Module, spec: ModelSpec, hw: tuple[int, int]) -> float:
    m = required_multiple(spec)
    shape = [int(np.ceil(s / m) * m) for s in hw]
    with FlopCounterMode(display=False) as fc, torch.inference_mode():
        model(torch.zeros(1, spec.in_channels, *shape))
    return float(fc.get_total_flops())


def calibrated_model(spec: ModelSpec, vols: list[Volume], card: ModelCard, seed: int = 0) -> UNet:
    """Random weights (fixed seed) with BatchNorm statistics measured on real slices."""
    torch.manual_seed(seed)
    model = build_model(spec)
    for mod in model.modules():
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
            mod.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        for v in vols[:4]:
            img = prepare_image(v, card)
            model(torch.from_numpy(img[:: max(1, img.shape[0] // 8)][:, None].copy()))
    return model.eval()


_PEAK = [0.0]
CASES = ["hippo32", "hippo16", "brain", "large"]


def peak_now() -> float:
    """Best fp32 matmul rate seen so far (re-measured before each case: the box is shared)."""
    _PEAK[0] = max(_PEAK[0], matmul_peak())
    return _PEAK[0]


def run_case(name: str, vols: list[Volume], spec: ModelSpec, repeats: int, monai_ok: bool,
             checkpoint: Path | None = None) -> dict:
    """Time the three methods on ``vols``; random calibrated weights unless ``checkpoint`` is given."""
    if checkpoint is not None:
        model, card = load_checkpoint(checkpoint)
        spec = card.spec
        name += f" - bundled model {card.name!r}"
    else:
        card = ModelCard(spec=spec, labels={0: "background", 1: "a", 2: "b"})
        model = calibrated_model(spec, vols, card)
    slices = sum(v.shape[0] for v in vols)
    voxels = sum(int(np.prod(v.shape)) for v in vols)
    flops = sum(flops_per_slice(model, spec, v.shape[1:]) * v.shape[0] for v in vols)
    first = ours(model, vols[0], card)  # warm-up + batch size used
    bs = first.batch_size
    methods = {
        "ours": lambda: [ours(model, v, card) for v in vols],
        "per-slice": lambda: [per_slice_loop(model, v.array) for v in vols],
    }
    if monai_ok:
        methods["monai"] = lambda: [monai_sliding(model, v, card, bs) for v in vols]
    best = {k: float("inf") for k in methods}
    for fn in methods.values():  # warm-up
        fn()
    for _ in range(repeats):
        for k, fn in methods.items():
            best[k] = min(best[k], _time(fn))
    peak = peak_now()
    # label agreement on the same normalised input
    agree = {}
    ref = [ours(model, v, card).labels for v in vols]
    tut = [per_slice_loop(model, prepare_image(v, card), minmax=False) for v in vols]
    agree["per-slice"] = float(np.mean(np.concatenate([(a == b).ravel() for a, b in zip(ref, tut)])))
    if monai_ok:
        mon = [monai_sliding(model, v, card, bs) for v in vols]
        agree["monai"] = float(np.mean(np.concatenate([(a == b).ravel() for a, b in zip(ref, mon)])))
    print(f"\n### {name}: {len(vols)} volume(s), {slices} slices, {voxels / 1e6:.2f} Mvoxels; "
          f"{count_parameters(model) / 1e6:.2f} M params (base {spec.base_width}, depth {spec.depth}); "
          f"{flops / slices / 1e9:.2f} GFLOP/slice; our batch {bs}; peak {peak:.0f} GFLOP/s", flush=True)
    print(f"| method | {CLOCK[0]} s | slices/s | Mvoxels/s | GFLOP/s | % of peak | speed-up of ours | labels = ours |")
    print("|---|---|---|---|---|---|---|---|")
    for k, t in best.items():
        ratio = t / best["ours"]
        same = "-" if k == "ours" else f"{agree[k] * 100:.4f} %"
        print(f"| {k} | {t:.3f} | {slices / t:.1f} | {voxels / t / 1e6:.2f} | {flops / t / 1e9:.1f} | "
              f"{flops / t / 1e9 / peak * 100:.0f} % | {'-' if k == 'ours' else f'{ratio:.2f}x'} | {same} |", flush=True)
    return {"best": best, "agree": agree}


def run_large(repeats: int, n_slices: int) -> None:
    """31 M-param classic U-Net on 512x512 slices: time a few slices, extrapolate."""
    spec = ModelSpec(base_width=64, depth=4)
    card = ModelCard(spec=spec)
    series = DATA / "formats" / "ct_dicom_3slice" / "series"
    vol = read(series) if series.is_dir() else Volume(np.random.default_rng(0).normal(0, 300, (3, 512, 512)).astype(np.float32))
    vol = Volume(vol.array[:n_slices], spacing=vol.spacing, modality="CT")
    model = calibrated_model(spec, [vol], card)
    flops = flops_per_slice(model, spec, vol.shape[1:]) * vol.shape[0]
    ours(model, vol, card)
    best = {"ours": float("inf"), "per-slice": float("inf")}
    for _ in range(repeats):
        best["ours"] = min(best["ours"], _time(lambda: ours(model, vol, card)))
        best["per-slice"] = min(best["per-slice"], _time(lambda: per_slice_loop(model, vol.array)))
    n = vol.shape[0]
    peak = peak_now()
    print(f"\n### 31 M-param U-Net (base 64, depth 4, {count_parameters(model) / 1e6:.1f} M params), 512x512 CT, "
          f"{n} real slices timed, {flops / n / 1e9:.0f} GFLOP/slice; extrapolated to 512x512x100; peak {peak:.0f} GFLOP/s")
    print(f"| method | {CLOCK[0]} s/slice | est. s for 100 slices | GFLOP/s | % of peak | speed-up of ours |")
    print("|---|---|---|---|---|---|")
    for k, t in best.items():
        speedup = "-" if k == "ours" else f"{t / best['ours']:.2f}x"
        gflops = flops / t / 1e9
        print(f"| {k} | {t / n:.2f} | {t / n * 100:.0f} | {gflops:.1f} | {gflops / peak * 100:.0f} % | {speedup} |",
              flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    ap.add_argument("--quick", action="store_true", help="fewer cases and repeats")
    ap.add_argument("--cases", nargs="+", default=CASES, choices=CASES, help="which runs (default: all)")
    ap.add_argument("--clock", choices=["auto", "wall", "cpu"], default="auto",
                    help="time with the wall clock or this process's CPU time (auto: CPU time when 1 thread)")
    args = ap.parse_args()
    threads = set_cpu_threads(args.threads)
    CLOCK[0] = ("cpu" if threads == 1 else "wall") if args.clock == "auto" else args.clock
    repeats = 2 if args.quick else args.repeats
    try:
        import monai  # noqa: F401

        monai_ok = True
    except ImportError:
        monai_ok = False
        print("monai not installed: skipping the MONAI baseline")
    print(f"torch {torch.__version__}, {threads} thread(s), {CLOCK[0]} clock; CPU fp32 peak (4096^2 matmul, best so far) "
          f"{peak_now():.0f} GFLOP/s; load average {os.getloadavg()[0]:.1f}", flush=True)
    wanted = set(args.cases)
    hippo = hippocampus_cases(4 if args.quick else 10) if wanted & {"hippo32", "hippo16"} else []
    if "hippo32" in wanted and hippo:
        run_case("Hippocampus MR (MSD Task04)", hippo, ModelSpec(base_width=32, depth=4), repeats, monai_ok)
    if "hippo16" in wanted and hippo:  # the 1.9 M-param 2D U-Net (default-2's spec): real weights when bundled
        run_case("Hippocampus MR (MSD Task04)", hippo, ModelSpec(base_width=16, depth=4), repeats, monai_ok,
                 checkpoint=_bundled_2d(ModelSpec(base_width=16, depth=4)))
    brain = DATA / "formats" / "mri_brain_nrrd" / "image.nrrd"
    if "brain" in wanted and brain.is_file():
        run_case("Brain MR 256x256x25 (pyradiomics)", [read(brain)], ModelSpec(base_width=32, depth=4), repeats, monai_ok)
    if "large" in wanted:
        run_large(max(1, repeats // 2), 3 if not args.quick else 1)
    return 0


def _bundled_2d(spec: ModelSpec) -> Path | None:
    """The bundled default model when it is this 2D network (else None: random weights, same timing)."""
    from unet_engine.model.checkpoint import load_card

    default = BUNDLED_MODELS / "default"
    if not (default / "card.json").is_file():
        return None
    got = load_card(default).spec
    return default if (got.dims, got.base_width, got.depth, got.context_slices) == (2, spec.base_width, spec.depth, 0) else None


if __name__ == "__main__":
    sys.exit(main())
