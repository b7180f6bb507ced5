"""Writes ``weights.pt``, the plain state_dict this example starts from (already committed;
run it again to reproduce it): DigitNet trained 8 epochs on data.py's split.

    python examples/custom_cnn/make_weights.py
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def main() -> None:
    from data import MEAN, STD, load
    from net import build

    torch.manual_seed(0)
    data = load()
    x, y = (torch.from_numpy(a) for a in data["train"])
    x = (x - MEAN[0]) / STD[0]
    model = build()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 0.1, total_steps=8 * ((len(x) + 63) // 64))
    model.train()
    for _ in range(8):
        for idx in torch.randperm(len(x)).split(64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
            sched.step()
    model.eval()
    xt, yt = (torch.from_numpy(a) for a in data["test"])
    with torch.no_grad():
        acc = (model((xt - MEAN[0]) / STD[0]).argmax(1) == yt).float().mean().item()
    torch.save(model.state_dict(), HERE / "weights.pt")
    print(f"test accuracy {acc:.2%}; wrote {HERE / 'weights.pt'}")


if __name__ == "__main__":
    main()
