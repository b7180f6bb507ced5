"""What tests/train/test_distributed.py runs in each process, under torchrun (two ranks)
or alone (the one-process reference): train a tiny model on digits, prune it with a
data-driven criterion while fine-tuning between rounds, and write what each rank ended
with (accuracies, weight hashes, widths, collective results) to OUT/rank<R>.json.

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/train/ddp_worker.py OUT
    python tests/train/ddp_worker.py OUT
"""
from __future__ import annotations

import copy
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

from deploypipe.data import load_dataset
from deploypipe.errors import BudgetError
from deploypipe.models import create_model
from deploypipe.prune.budget import Budget
from deploypipe.prune.methods import PruneContext, PruneRequest, create_method
from deploypipe.prune.methods._live import LiveChannels
from deploypipe.prune.torch_groups import TorchPruner
from deploypipe.train import (TrainConfig, distributed_session, evaluate, fit, on_rank_zero, rank, solo,
                              world_size)


def weights_hash(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def train_part(data, out: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model("test_resnet_cifar", num_classes=10, in_channels=1, input_size=8)
    result = fit(model, data, TrainConfig(epochs=3, batch_size=64, lr=0.1, progress=False))
    out.update(steps=result.steps, val_acc=result.final_val_acc, train_loss=result.history[-1].train_loss,
               test_acc=evaluate(model, data.test), trained=weights_hash(model))
    with solo():  # this rank alone, on the whole split: must equal the rank-summed accuracy
        out["test_acc_local"] = evaluate(model, data.test)
    return model


def prune_part(model: torch.nn.Module, data, out: dict) -> None:
    request = PruneRequest(budget=Budget("ratio", 0.4), importance="taylor", calibration_batches=2)
    ctx = PruneContext(TorchPruner(model, (1, 1, 8, 8)), request, data=data,
                       train_config=TrainConfig(epochs=1, batch_size=64, lr=0.01, progress=False))
    create_method("iterative", {"steps": 2, "step_epochs": 1}).run(ctx)
    gid = max((g for g in ctx.pruner.groups if ctx.pruner.is_prunable(g)), key=lambda g: g.width).id
    before = ctx.kept[gid].tolist()
    ctx.prune({gid: np.array([rank()])})  # each rank asks for another channel: rank 0's wins
    out["forced"] = {"before": before, "after": ctx.kept[gid].tolist()}
    ctx.finetune(1)
    out.update(widths=[int(w) for w in ctx.pruner.widths()], kept=[ctx.kept[g].tolist() for g in sorted(ctx.kept)],
               pruned=weights_hash(model), pruned_acc=evaluate(model, data.test), rounds=len(ctx.rounds),
               summed=ctx.sum_over_ranks({0: np.array([rank() + 1.0, 1.0])})[0].tolist())


def fisher_part(model: torch.nn.Module, data, out: dict) -> None:
    """Group Fisher removes channels from its own masks while training: every rank must
    pick the same ones, which needs the Fisher information summed over ranks."""
    request = PruneRequest(budget=Budget("ratio", 0.3), importance="l1")
    ctx = PruneContext(TorchPruner(model, (1, 1, 8, 8)), request, data=data,
                       train_config=TrainConfig(epochs=2, batch_size=64, lr=0.1, progress=False))
    out["dense_widths"] = [int(w) for w in ctx.pruner.widths()]
    kills: list = []  # every (group, channels) each rank masks, in order: slims would hide a divergence
    original = LiveChannels.kill

    def recording_kill(self, gid, idx):
        kills.append([int(gid), [int(i) for i in np.atleast_1d(idx)]])
        original(self, gid, idx)

    LiveChannels.kill = recording_kill
    try:
        create_method("group_fisher", {"d": 2, "slim_every": 4}).run(ctx)
    finally:
        LiveChannels.kill = original
    out["fisher"] = {"kills": kills, "widths": [int(w) for w in ctx.pruner.widths()], "weights": weights_hash(model),
                     "kept": [ctx.kept[g].tolist() for g in sorted(ctx.kept)]}


def collectives_part(out: dict) -> None:
    def fail() -> None:
        raise BudgetError("rank 0 says no")

    try:
        on_rank_zero(fail)
        out["error"] = None
    except BudgetError as exc:
        out["error"] = str(exc)


def main(folder: Path) -> None:
    with distributed_session():
        out: dict = {"rank": rank(), "world": world_size()}
        data = load_dataset("digits")
        model = train_part(data, out)
        fisher_part(copy.deepcopy(model), data, out)
        prune_part(model, data, out)
        collectives_part(out)
        (folder / f"rank{rank()}.json").write_text(json.dumps(out))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
