"""One benchmark run: one workload trained by one contender, in this process; prints one JSON line.

    python bench/contenders.py WORKLOAD CONTENDER [--epochs N] [--mnist-root DIR] [--device D]

WORKLOAD  mlp_digits | cnn_mnist | lstm_mnist      (see WORKLOADS)
CONTENDER hand | course | lightning | dltrain

Every contender trains the same model (built by dltrain's model registry from the same settings)
on the same training rows with the same batch size, optimizer and number of epochs, on the same
device, and evaluates loss and accuracy on the same validation rows after every epoch. What
differs is only the loop around them:

  hand       the minimal loop on tensors already in memory: randperm, index, zero_grad,
             forward, loss, backward, step; no DataLoader (the floor for per-step overhead)
  course     the course's loop: a Dataset whose __getitem__ yields one sample (torchvision's MNIST
             with ToTensor + Normalize for images) through DataLoader(batch_size, shuffle=True)
  lightning  the same model in a LightningModule, DataLoaders over in-memory tensors, and
             Lightning's default Trainer settings (logger, checkpointing, progress bar)
  dltrain    dltrain's own trainer with the workload's dltrain defaults (TensorBoard logging,
             checkpoints, per-epoch metrics), called as `dltrain fit` calls it

The time of an epoch is measured from one epoch's start to the next one's: the training pass,
the validation pass and whatever each contender does between epochs (logging, checkpoints).
The first epoch is reported apart (it includes warm-up) and left out of the per-epoch median.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MNIST = REPO.parent / "shared" / "data" / "mnist-subset"

# name -> dltrain overrides: the single source of truth for data, model, batch size, optimizer.
WORKLOADS = {
    "mlp_digits": ["data=digits", "model=mlp"],  # exactly the default `dltrain fit`
    "cnn_mnist": ["data=mnist", "model=cnn"],  # the course's basic CNN (conv 10, conv 20, linear)
    "lstm_mnist": ["data=mnist", "data.as_sequence=true", "model=lstm"],  # 28 rows as 28 steps
}
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # what the course's Normalize uses


class Workload:
    """The workload's settings, prepared tensors and a model factory, all from dltrain itself."""

    def __init__(self, name: str, epochs: int, mnist_root: Path, device: str):
        from dltrain.config import compose, read_settings
        from dltrain.data import load_source, prepare
        from dltrain.data.split import train_val_indices
        from dltrain.train.device import resolve_device, seed_everything
        from dltrain.train.objective import build_objective

        self.name = name
        self.overrides = [*WORKLOADS[name], f"trainer.epochs={epochs}", f"trainer.device={device}",
                          "trainer.progress=false"]
        if "data=mnist" in self.overrides:
            self.overrides.append(f"data.root={mnist_root}")
        self.cfg = compose(self.overrides)
        self.settings = read_settings(self.cfg)
        self.epochs = epochs
        self.batch_size = self.settings.data.batch_size
        self.lr = self.settings.optimizer.lr
        self.device = resolve_device(self.settings.trainer.device)
        seed_everything(self.settings.trainer.seed)
        self.source = load_source(self.settings.data)
        self.train_index, self.val_index = train_val_indices(
            self.source, self.settings.data.val_fraction, self.settings.trainer.seed)
        self.data = prepare(self.source, self.train_index, self.val_index)
        self.objective = build_objective(self.settings.loss.name, self.settings.loss.options, self.data.spec)

    def model(self):
        import torch

        from dltrain.models import create_model

        torch.manual_seed(self.settings.trainer.seed)
        return create_model(self.settings.model.name, self.data.spec, self.objective.output_size,
                            **self.settings.model.options)

    def optimizer(self, model):
        import torch

        return torch.optim.Adam(model.parameters(), lr=self.lr)


def evaluate(model, x, y, batch: int = 1024) -> tuple[float, float]:
    """Validation loss and accuracy, one host sync at the end (what every contender computes)."""
    import torch
    import torch.nn.functional as F

    model.eval()
    with torch.no_grad():
        outputs = torch.cat([model(x[i:i + batch]) for i in range(0, len(x), batch)])
        loss = F.cross_entropy(outputs, y)
        accuracy = (outputs.argmax(1) == y).float().mean()
    model.train()
    return float(loss), float(accuracy)


# --------------------------------------------------------------------------- contenders


def run_hand(work: Workload) -> list[float]:
    import torch
    import torch.nn.functional as F

    device = work.device
    x, y = work.data.train.x.to(device), work.data.train.y.to(device)
    vx, vy = work.data.val.x.to(device), work.data.val.y.to(device)
    model = work.model().to(device)
    optimizer = work.optimizer(model)
    generator = torch.Generator().manual_seed(0)
    marks = [time.perf_counter()]
    for _ in range(work.epochs):
        order = torch.randperm(len(y), generator=generator).to(device)
        for i in range(0, len(y), work.batch_size):
            index = order[i:i + work.batch_size]
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x[index]), y[index])
            loss.backward()
            optimizer.step()
        evaluate(model, vx, vy)
        marks.append(time.perf_counter())
    return marks


def _course_datasets(work: Workload):
    """The course's datasets: torchvision MNIST with ToTensor + Normalize, one sample per
    __getitem__; for tabular data, a Dataset over the prepared rows (the course's DiabetesDataset)."""
    import torch
    from torch.utils.data import Dataset, Subset

    if work.settings.data.name == "mnist":
        from torchvision import datasets, transforms

        transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MNIST_MEAN,), (MNIST_STD,))])
        full = datasets.MNIST(work.settings.data.options["root"], train=True, download=False, transform=transform)
        if work.settings.data.options.get("as_sequence"):
            class Rows(Dataset):  # the course's RNN on MNIST: an image as 28 rows of 28 pixels
                def __init__(self, images):
                    self.images = images

                def __len__(self):
                    return len(self.images)

                def __getitem__(self, i):
                    image, label = self.images[i]
                    return image.view(28, 28), label

            full = Rows(full)
        return Subset(full, work.train_index.tolist()), Subset(full, work.val_index.tolist())

    class Rows(Dataset):
        def __init__(self, x, y):
            self.x, self.y = x, y

        def __len__(self):
            return len(self.y)

        def __getitem__(self, i):
            return self.x[i], self.y[i]

    return Rows(work.data.train.x, work.data.train.y), Rows(work.data.val.x, work.data.val.y)


def run_course(work: Workload) -> list[float]:
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    device = work.device
    train_set, val_set = _course_datasets(work)
    train_loader = DataLoader(train_set, batch_size=work.batch_size, shuffle=True,
                              generator=torch.Generator().manual_seed(0))
    val_loader = DataLoader(val_set, batch_size=1000)
    model = work.model().to(device)
    optimizer = work.optimizer(model)
    marks = [time.perf_counter()]
    for _ in range(work.epochs):
        model.train()
        for data, target in train_loader:
            data, target = data.to(device), target.to(device)
            optimizer.zero_grad()
            loss = F.cross_entropy(model(data), target)
            loss.backward()
            optimizer.step()
        model.eval()
        total, correct, count = 0.0, 0, 0
        with torch.no_grad():
            for data, target in val_loader:
                data, target = data.to(device), target.to(device)
                output = model(data)
                total += F.cross_entropy(output, target, reduction="sum").item()
                correct += (output.argmax(1) == target).sum().item()
                count += len(target)
        marks.append(time.perf_counter())
    return marks


def run_lightning(work: Workload) -> list[float]:
    import lightning as L
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, TensorDataset

    marks: list[float] = []

    class Module(L.LightningModule):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = F.cross_entropy(self.model(x), y)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch, batch_idx):
            x, y = batch
            outputs = self.model(x)
            self.log("val_loss", F.cross_entropy(outputs, y))
            self.log("val_acc", (outputs.argmax(1) == y).float().mean())

        def configure_optimizers(self):
            return work.optimizer(self.model)

    class Marks(L.Callback):
        def on_train_epoch_start(self, trainer, module):
            marks.append(time.perf_counter())

        def on_train_end(self, trainer, module):
            marks.append(time.perf_counter())

    train = TensorDataset(work.data.train.x, work.data.train.y)
    val = TensorDataset(work.data.val.x, work.data.val.y)
    accelerator = "gpu" if work.device.type == "cuda" else work.device.type
    with tempfile.TemporaryDirectory() as root:
        trainer = L.Trainer(max_epochs=work.epochs, accelerator=accelerator, devices=1,
                            default_root_dir=root, callbacks=[Marks()], num_sanity_val_steps=0)
        trainer.fit(Module(work.model()),
                    DataLoader(train, batch_size=work.batch_size, shuffle=True,
                               generator=torch.Generator().manual_seed(0)),
                    DataLoader(val, batch_size=1024))
    return marks


def run_dltrain(work: Workload) -> list[float]:
    """dltrain's trainer through ``train_split``, the function `dltrain fit` runs in its Hydra job
    (the Hydra start-up and imports are measured apart, as the wall time of `dltrain fit`)."""
    from rich.console import Console

    from dltrain.commands.fit import train_split

    marks = [time.perf_counter()]
    with tempfile.TemporaryDirectory() as root:
        train_split(work.cfg, work.settings, work.source, work.train_index, work.val_index,
                    Path(root) / "run", out=Console(file=open(os.devnull, "w")),
                    callbacks=[lambda epoch, row: marks.append(time.perf_counter())])
    return marks


CONTENDERS = {"hand": run_hand, "course": run_course, "lightning": run_lightning, "dltrain": run_dltrain}


def peak_memory_mib(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload", choices=sorted(WORKLOADS))
    parser.add_argument("contender", choices=sorted(CONTENDERS))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--mnist-root", type=Path, default=DEFAULT_MNIST)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    if args.contender == "lightning":
        try:
            import lightning  # noqa: F401
        except ImportError:
            print(json.dumps({"skipped": "lightning is not installed: pip install -e '.[bench]'"}))
            return
    work = Workload(args.workload, args.epochs, args.mnist_root, args.device)
    import torch

    if work.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(work.device)
    marks = CONTENDERS[args.contender](work)
    if work.device.type == "cuda":
        torch.cuda.synchronize()
    epochs = [b - a for a, b in zip(marks, marks[1:])]
    print(json.dumps({
        "workload": args.workload, "contender": args.contender, "device": str(work.device),
        "train_samples": len(work.train_index), "val_samples": len(work.val_index),
        "batch_size": work.batch_size, "epoch_seconds": epochs,
        "peak_memory_mib": peak_memory_mib(work.device),
    }))


if __name__ == "__main__":
    sys.exit(main())
