"""``segloop train`` under ``torchrun --nproc_per_node=2`` (DistributedDataParallel on gloo, CPU)."""

from __future__ import annotations

import re
import socket
import subprocess
import sys

import pytest

from tests.train_helpers import ROOT, make_dataset, python_env, tiny_config
from unet_engine.model.checkpoint import load_checkpoint
from unet_engine.registry.versions import ModelRegistry
from unet_engine.training.fine_tune import weights_sha256


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_torchrun_two_ranks_end_with_identical_weights(tmp_path):
    torch_dist = pytest.importorskip("torch.distributed")
    if not torch_dist.is_available() or not torch_dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    ds = make_dataset(tmp_path)
    reg = tmp_path / "models"
    cfg = tiny_config(max_steps=6, steps_per_epoch=3, checkpoint_every_steps=3, val_max_cases=None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1",
           "--master_addr=127.0.0.1", f"--master_port={_free_port()}",
           "-m", "unet_engine.cli.main", "train", "--dataset", str(ds.folder), "--registry", str(reg),
           "--from", "scratch", "--config", cfg.to_json(), "--threads", "1"]
    proc = subprocess.run(cmd, cwd=ROOT, env=python_env(), capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    hashes = dict(re.findall(r"rank (\d)/2 weights sha256 ([0-9a-f]{64})", out))
    assert set(hashes) == {"0", "1"}, out[-2000:]
    assert hashes["0"] == hashes["1"]  # gradients all-reduced, buffers synchronised
    versions = ModelRegistry(reg).list()  # only rank 0 wrote the registry
    assert len(versions) == 1
    model, card = load_checkpoint(versions[0].path)
    assert weights_sha256(model) == hashes["0"]
    assert len(versions[0].curves["epoch"]) == 2
    # each rank scored half of the val split; the all-reduced mean equals a one-process evaluation
    from unet_engine.training.validation import evaluate_model

    assert len(ds.val_cases()) == 2
    single = evaluate_model(model, card, ds, ds.val_cases())
    assert single.mean_dice == pytest.approx(versions[0].metrics["val_mean_dice"], abs=1e-9)
