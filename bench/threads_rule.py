"""Where one intra-op thread beats torch's default: training steps of models of growing size,
timed with torch.set_num_threads(1) and with torch's default, interleaved in one process.

    python bench/threads_rule.py [--pairs 5] [--steps 60]

For each model it prints the forward multiply-adds of one batch (dltrain.train.threads.forward_macs,
the quantity trainer.threads=auto compares with SMALL_STEP_MACS) and the median over pairs of
(seconds per step on one thread) / (seconds per step on the default): below 1, one thread wins.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dltrain.train.threads import forward_macs  # noqa: E402


def mlp(inputs, hidden, outputs=10):
    layers, size = [], inputs
    for width in hidden:
        layers += [nn.Linear(size, width), nn.ReLU(), nn.Dropout(0.1)]
        size = width
    return nn.Sequential(*layers, nn.Linear(size, outputs))


class Recurrent(nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.lstm = nn.LSTM(28, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 10)

    def forward(self, x):
        return self.head(self.lstm(x)[0][:, -1])


def course_cnn():
    return nn.Sequential(nn.Conv2d(1, 10, 5), nn.MaxPool2d(2), nn.ReLU(), nn.Conv2d(10, 20, 5),
                         nn.MaxPool2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(320, 10))


# name -> (model factory, one batch of inputs, classification?)
MODELS = {
    "linear house-like (300 -> 1), batch 64": (lambda: nn.Linear(300, 1), (64, 300), False),
    "mlp digits 64-128-64-10, batch 64 (default fit)": (lambda: mlp(64, [128, 64]), (64, 64), True),
    "mlp 64-256-256-10, batch 64": (lambda: mlp(64, [256, 256]), (64, 64), True),
    "mlp 784-256-128-10, batch 64": (lambda: mlp(784, [256, 128]), (64, 784), True),
    "mlp 784-512-512-10, batch 64": (lambda: mlp(784, [512, 512]), (64, 784), True),
    "mlp 784-1024-1024-10, batch 64": (lambda: mlp(784, [1024, 1024]), (64, 784), True),
    "lstm 28x28 hidden 128, batch 64": (lambda: Recurrent(128), (64, 28, 28), True),
    "course cnn on 28x28, batch 64": (course_cnn, (64, 1, 28, 28), True),
}


def seconds_per_step(model, optimizer, x, y, loss_fn, steps: int) -> float:
    started = time.perf_counter()
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        optimizer.step()
    return (time.perf_counter() - started) / steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    default = torch.get_num_threads()
    torch.manual_seed(0)
    results = []
    for name, (factory, shape, classes) in MODELS.items():
        model = factory()
        x = torch.randn(*shape)
        y = torch.randint(0, 10, (shape[0],)) if classes else torch.randn(shape[0], 1)
        loss_fn = nn.CrossEntropyLoss() if classes else nn.MSELoss()
        optimizer = torch.optim.Adam(model.parameters(), 1e-3)
        macs = forward_macs(model, x)
        seconds_per_step(model, optimizer, x, y, loss_fn, 5)  # warm-up (and Adam's first-step imports)
        ratios, one, many = [], [], []
        for pair in range(args.pairs):
            order = (1, default) if pair % 2 == 0 else (default, 1)
            timing = {}
            for threads in order:
                torch.set_num_threads(threads)
                timing[threads] = seconds_per_step(model, optimizer, x, y, loss_fn, args.steps)
            ratios.append(timing[1] / timing[default])
            one.append(timing[1])
            many.append(timing[default])
        torch.set_num_threads(default)
        row = {"model": name, "forward_macs": macs, "ms_step_1_thread": 1e3 * statistics.median(one),
               f"ms_step_{default}_threads": 1e3 * statistics.median(many),
               "ratio_1_over_default": statistics.median(ratios), "ratios": [round(r, 3) for r in ratios],
               "pairs": args.pairs}
        results.append(row)
        print(f"{name:50s} {macs / 1e6:8.2f}M MACs  1 thread {row['ms_step_1_thread']:7.2f} ms  "
              f"{default} threads {row[f'ms_step_{default}_threads']:7.2f} ms  "
              f"1/default {row['ratio_1_over_default']:.2f}  ({', '.join(f'{r:.2f}' for r in ratios)})",
              flush=True)
    Path(__file__).with_name("threads_rule.json").write_text(json.dumps(
        {"default_threads": default, "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
