"""Inference on a CUDA GPU: the table of issue 14, SegLoop vs the reference implementations,
same networks and weights, in one process.

Volume: the synthetic CT of ``bench/synthetic_ct.py`` (slices 50..349: 300 x 512 x 512 int16).

3D, the bundled default model (3D U-Net, training patch 40x56x40):
* ``segloop``            - ``predict_volume(model, card, volume, device="cuda")`` (raw int16 to the
                           GPU, normalised there, fp16 autocast, windows batched and blended on the
                           GPU, labels back to the host); ``+unc`` also reads the uncertainty;
                           ``tta`` flip TTA as the card allows (left-right: 2 variants);
* ``segloop window N``   - the same with the window grown to N voxels (the default is
                           ``inference_runner.WINDOW_VOXELS``): which size this GPU likes;
* ``monai``              - ``sliding_window_inference`` (ROI = training patch, overlap 0.25,
                           ``mode="gaussian"``, sw_batch 32, fp16 autocast, the network as loaded)
                           over the normalised image on the GPU (normalisation on the host timed),
                           argmax, labels to the host.
2D, a 31 M-parameter U-Net (``ModelSpec(base_width=64, depth=4)``, random weights, BatchNorm
statistics measured on the CT), 300 slices of 512 x 512:
* ``segloop`` (and ``tta``: all in-plane flips, 4 variants; ``tta-lr``: left-right only, 2);
* ``plain fp16``  - the issue's reference: normalised volume on the GPU, channels-last, fp16
                    autocast, batch 32, argmax on the GPU, labels to the host;
* ``per-slice``   - the seeds' loop: batch 1, fp32, one ``.cpu()`` per slice.

Times: best of ``--repeats`` after one warm-up (cuDNN autotuning), ``torch.cuda.synchronize``
around each; peak GPU memory = ``max_memory_allocated`` during the call minus before it.
Agreement = voxels equal to the reference (the 3D model is a hippocampus model: on a CT it
labels almost nothing, so Dice there is agreement on near-empty sets). Real-data Dice: the
hippocampus validation cases as a mosaic (``bench/hippo_mosaic.py``, margin 12) read from
``--data`` (default ``../shared/data/hippocampus``).

Run on a GPU machine through ``bench/gpu_run.sh`` (prepared by ``bench/gpu_prep.sh``). Without
CUDA it says so and exits 0; ``--device cpu`` runs the whole script on a CPU as a smoke test.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

Row = dict[str, object]
DEVICE = "cuda"  # ``--device cpu``: a smoke run of the whole script on a machine without a GPU


def gpu_time(fn: Callable[[], np.ndarray], repeats: int) -> tuple[np.ndarray, float, float]:
    """(result, best seconds, peak GPU bytes above the start) of ``fn`` after one warm-up."""
    cuda = DEVICE == "cuda"
    out = fn()
    best, peak = float("inf"), 0
    for _ in range(repeats):
        base = 0
        if cuda:
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        out = fn()
        if cuda:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
        if cuda:
            peak = max(peak, torch.cuda.max_memory_allocated() - base)
    return out, best, float(peak)


def row_text(r: Row) -> str:
    return f"| {r['case']} | {r['method']} | {r['s']:.3f} | {float(r['mem']) / (1 << 30):.2f} | {r.get('agree', '-')} |"


class Rows(list):
    """The table's rows, each also printed as it is measured (a run cut short keeps what it had)."""

    def append(self, row: Row) -> None:
        super().append(row)
        print(row_text(row), flush=True)


def agreement(a: np.ndarray, b: np.ndarray) -> str:
    from unet_engine.metrics import dice

    labs = sorted(set(np.unique(b).tolist()) - {0})[:3]
    d = ", ".join(f"{lab}: {dice(a, b, lab):.4f}" for lab in labs)
    return f"{(a == b).mean() * 100:.3f} %" + (f" (Dice {d})" if d else "")


def monai_3d(net: torch.nn.Module, image: Callable[[], np.ndarray], roi: tuple[int, ...], overlap: float = 0.25) -> np.ndarray:
    from monai.inferers import sliding_window_inference

    x = torch.from_numpy(np.ascontiguousarray(image())).to(DEVICE)[None, None]
    with torch.inference_mode(), torch.autocast(DEVICE, dtype=torch.float16):
        logits = sliding_window_inference(x, roi, 32, net, overlap=overlap, mode="gaussian")
    return logits.argmax(dim=1)[0].to(torch.uint8).cpu().numpy()


def bench_3d(vol, repeats: int, rows: list[Row], have_monai: bool, data: Path | None) -> None:
    from unet_engine.model.checkpoint import load_checkpoint
    from unet_engine.inference.predict import predict_volume
    from unet_engine.inference.runner import WINDOW_VOXELS, patch_size, window_size
    from unet_engine.model.network import required_multiple
    from unet_engine.paths import BUNDLED_MODELS
    from unet_engine.model.preprocessing import prepare_image
    from unet_engine.progress import run_generator
    from unet_engine.inference.sliding_window import grow_window

    model, card = load_checkpoint(BUNDLED_MODELS / "default", DEVICE)
    dev = torch.device(DEVICE)
    roi = tuple(int(p) for p in card.training["patch_size"])
    ref = None
    if have_monai:
        ref, t, mem = gpu_time(lambda: monai_3d(model, lambda: prepare_image(vol, card), roi), repeats)
        rows.append({"case": "3D bundled", "method": "monai (overlap 0.25, fp16, sw_batch 32)", "s": t, "mem": mem})

    def ours(tta: bool = False, unc: bool = False, window=None) -> Callable[[], np.ndarray]:
        def run() -> np.ndarray:
            pred = run_generator(predict_volume(model, card, vol, device=dev, tta=tta, window=window))
            if unc:
                _ = pred.uncertainty
            return pred.labels
        return run

    default = window_size(card, vol.shape, dev)
    for name, fn in [("segloop", ours()), ("segloop +unc", ours(unc=True)), ("segloop tta (left-right)", ours(tta=True))]:
        lab, t, mem = gpu_time(fn, repeats)
        rows.append({"case": "3D bundled", "method": f"{name}, window {'x'.join(map(str, default))}", "s": t, "mem": mem,
                     "agree": agreement(lab, ref) if ref is not None else "-"})
    train = patch_size(card, vol.shape)
    for budget in (1 << 20, 1 << 22, 1 << 23):
        if budget == WINDOW_VOXELS["default"]:
            continue
        win = grow_window(vol.shape, train, required_multiple(card.spec), budget, 0.25)
        lab, t, mem = gpu_time(ours(window=win), repeats)
        method = f"segloop window {'x'.join(map(str, win))} ({budget >> 20} M budget)"
        rows.append({"case": "3D bundled", "method": method, "s": t,
                     "mem": mem, "agree": agreement(lab, ref) if ref is not None else "-"})
    if data is None:
        return
    try:
        real_data(model, card, rows, have_monai, data)
    except (ImportError, FileNotFoundError, OSError) as exc:
        print(f"(real-data Dice skipped: {exc})")


def real_data(model, card, rows: list[Row], have_monai: bool, data: Path) -> None:
    from bench.hippo_mosaic import build_mosaic, load_cases, mosaic_dice, val_case_ids
    from unet_engine.inference.runner import Runner, run_patches, window_size
    from unet_engine.progress import run_generator
    from unet_engine.inference.tta import flip_axes_for

    m = build_mosaic(load_cases(val_case_ids(card), data), card, margin=12)
    dev = torch.device(DEVICE)
    win = window_size(card, m.image.shape, dev)

    def ours() -> np.ndarray:
        runner = Runner(model, dev, 3, 32, False, flip_axes_for(card))
        return run_generator(run_patches(runner, m.image, None, card, None, window=win)).labels.cpu().numpy()

    methods = [("segloop", ours)]
    if have_monai:
        roi = tuple(int(p) for p in card.training["patch_size"])
        methods.append(("monai overlap 0.25", lambda: monai_3d(model, lambda: m.image, roi)))
        methods.append(("monai overlap 0.5", lambda: monai_3d(model, lambda: m.image, roi, 0.5)))
    for name, fn in methods:
        lab, t, mem = gpu_time(fn, 1)
        d = mosaic_dice(lab, m)
        rows.append({"case": f"3D mosaic {'x'.join(map(str, m.image.shape))}", "method": name, "s": t, "mem": mem,
                     "agree": f"Dice vs truth {d[1]:.4f} / {d[2]:.4f}"})


def bench_2d(vol, repeats: int, rows: list[Row]) -> None:
    from unet_engine.model.checkpoint import ModelCard
    from unet_engine.inference.predict import predict_volume
    from unet_engine.model.network import ModelSpec, build_model, count_parameters
    from unet_engine.model.preprocessing import prepare_image
    from unet_engine.progress import run_generator

    spec = ModelSpec(dims=2, base_width=64, depth=4)
    card = ModelCard(spec=spec, preprocessing={"mode": "ct"})
    torch.manual_seed(0)
    model = build_model(spec).to(DEVICE).train()
    image = prepare_image(vol, card)
    with torch.no_grad():  # BatchNorm statistics of the data
        for k in range(0, image.shape[0], max(1, image.shape[0] // 8)):
            model(torch.from_numpy(image[k : k + 4]).to(DEVICE)[:, None])
    model.eval()
    n_params = count_parameters(model) / 1e6
    case = f"2D {n_params:.1f} M, {image.shape[0]} x {image.shape[1]}^2"
    plain_net = model.to(memory_format=torch.channels_last)

    def plain() -> np.ndarray:
        x = torch.from_numpy(prepare_image(vol, card)).to(DEVICE)
        out = torch.empty(x.shape, dtype=torch.uint8, device=DEVICE)
        with torch.inference_mode(), torch.autocast(DEVICE, dtype=torch.float16):
            for s in range(0, x.shape[0], 32):
                xb = x[s : s + 32, None].contiguous(memory_format=torch.channels_last)
                out[s : s + 32] = plain_net(xb).argmax(dim=1).to(torch.uint8)
        return out.cpu().numpy()

    def per_slice() -> np.ndarray:
        x = prepare_image(vol, card)
        out = np.empty(x.shape, np.uint8)
        with torch.no_grad():
            for k in range(x.shape[0]):
                logits = model(torch.from_numpy(x[k][None, None]).to(DEVICE))
                out[k] = logits.argmax(dim=1)[0].cpu().numpy()
        return out

    ref, t, mem = gpu_time(plain, repeats)
    rows.append({"case": case, "method": "plain fp16 channels-last batch 32", "s": t, "mem": mem})
    lab, t, mem = gpu_time(per_slice, max(1, repeats - 1))
    rows.append({"case": case, "method": "per-slice loop (batch 1, fp32)", "s": t, "mem": mem, "agree": agreement(lab, ref)})
    lr = ModelCard(spec=spec, preprocessing={"mode": "ct"}, training={"tta_flip_axes": [1]})
    for name, c, tta in [("segloop", card, False), ("segloop tta (4 flips)", card, True), ("segloop tta (left-right)", lr, True)]:
        pred_box: list = []

        def run(c=c, tta=tta) -> np.ndarray:
            pred = run_generator(predict_volume(model, c, vol, device=DEVICE, tta=tta))
            pred_box[:] = [pred]
            return pred.labels

        lab, t, mem = gpu_time(run, repeats)
        rows.append({"case": case, "method": f"{name} (batch {pred_box[0].batch_size})", "s": t, "mem": mem,
                     "agree": agreement(lab, ref)})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--only", choices=["2d", "3d"], default=None)
    ap.add_argument("--crop", type=int, default=512, help="in-plane size (a smaller square around the centre)")
    ap.add_argument("--skip-real", action="store_true", help="no hippocampus mosaic (real-data Dice)")
    ap.add_argument("--data", type=Path, default=None,
                    help="hippocampus folder (imagesTr, labelsTr; default ../shared/data/hippocampus)")
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                    help="cpu: a smoke run of the script itself (figures meaningless), e.g. --slices 8 --crop 96")
    args = ap.parse_args()
    global DEVICE
    DEVICE = args.device
    if DEVICE == "cuda" and not torch.cuda.is_available():
        print("gpu_bench: no CUDA GPU here (torch.cuda.is_available() is False); nothing measured.")
        return 0
    from bench.synthetic_ct import SPACING, make_ct
    from unet_engine.volume import Volume

    try:
        import monai

        have_monai, monai_version = True, monai.__version__
    except ImportError:
        have_monai, monai_version = False, "not installed (MONAI rows skipped)"
    device_name = torch.cuda.get_device_name(0) if DEVICE == 'cuda' else DEVICE
    print(f"{device_name}, torch {torch.__version__}, MONAI {monai_version}", flush=True)
    ct, _ = make_ct()
    start = (ct.shape[0] - args.slices) // 2
    edge = [min(args.crop, n) for n in ct.shape[1:]]
    box = (slice(start, start + args.slices), *(slice((n - e) // 2, (n - e) // 2 + e) for n, e in zip(ct.shape[1:], edge)))
    vol = Volume(np.ascontiguousarray(ct[box]), spacing=SPACING, modality="CT")
    del ct
    rows: list[Row] = Rows()
    if args.only in (None, "3d"):
        from bench.hippo_mosaic import DATA

        bench_3d(vol, args.repeats, rows, have_monai, None if args.skip_real else (args.data or DATA))
    if args.only in (None, "2d"):
        bench_2d(vol, args.repeats, rows)
    print(f"\nvolume {'x'.join(map(str, vol.shape))} int16; best of {args.repeats}\n")
    print("| case | method | s | peak GPU GiB | agreement with the reference |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(row_text(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
