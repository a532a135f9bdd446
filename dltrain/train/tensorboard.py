"""TensorBoard: what a run writes to its events file (stable, grouped scalar tags; an HParams
session; the config; graph, histograms and figures), the fold-averaged ``cv_mean`` run of a
cross-validation, and the name each run has there (``run_name``). (The server behind ``dltrain
tb`` is dltrain/commands/tb.py.)

Tags, one step per epoch: ``loss/train``, ``loss/val``, ``<metric>/train``, ``<metric>/val``,
``lr``, ``time/epoch_seconds``, ``throughput/samples_per_second``; at the last epoch
``loss/test`` and ``<metric>/test`` (best model, when the data has a test split) and
``best/<monitor>``. With ``logger.tensorboard.log_every_n_steps`` also ``step/loss_train`` and
``step/lr``, one point per N optimizer steps (written in batches, see ``RunLogger.step``)."""

from __future__ import annotations

import hashlib
import re
import time
import warnings
from pathlib import Path

from dltrain.console import console
from dltrain.data.target import TargetTransform
from dltrain.files import read_json_object

# The hparams recorded are the composed config minus settings that do not change what is learned.
_NOT_HPARAMS = ("hydra", "logger", "cv", "landscape", "k", "resume", "trainer.progress", "trainer.checkpoint_every_seconds",
                "trainer.device")


def run_name(run_dir: Path) -> str:
    """The name a run has in TensorBoard, which names a run by the folder of its events below the
    folder it serves: events right in the run folder would show as "." when it serves that run,
    and a sweep's runs by their bare job numbers. So they go in a sub-folder named after the run:
    a sweep point's own overrides (those not common to the whole sweep, as Hydra saved them),
    else the run folder's name."""
    run_dir = Path(run_dir)
    name = run_dir.name
    if name.isdigit():  # Hydra's job number: a point of a sweep
        common = _read_yaml(run_dir.parent / "multirun.yaml")
        for key in ("hydra", "overrides", "task"):
            common = common.get(key) if isinstance(common, dict) else None
        fixed = _fixed_keys(_strings(common))
        swept = [o for o in _strings(_read_yaml(run_dir / ".hydra" / "overrides.yaml"))
                 if o.partition("=")[0] not in fixed]
        name = ",".join(swept) or name
    # One folder name: no separator, not hidden, not too long for a file system.
    name = re.sub(r"[/\\\x00-\x1f]+", "_", name).lstrip(".") or "run"
    return name if len(name) <= 120 else f"{name[:100]}_{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def events_folder(run_dir: Path) -> Path:
    """Where a run writes its events: the run_name sub-folder, or the run folder itself for a
    run an older dltrain started there (a resume goes on beside its earlier events)."""
    run_dir = Path(run_dir)
    if any(run_dir.glob("events.out.tfevents.*")):
        return run_dir
    return run_dir / run_name(run_dir)


def _read_yaml(path: Path):
    """A small YAML file of a run folder as plain data (None if absent or not readable): read
    only for a name, never acted on."""
    import yaml

    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > 1 << 20:
            return None
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError):
        return None


def _fixed_keys(overrides: list[str]) -> set[str]:
    """The keys a sweep's overrides give one value (the same in every point)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception:  # not Hydra's grammar (a foreign file): every override then names the point
        return set()
    return {o.get_key_element() for o in parsed if not o.is_sweep_override()}


def _strings(data) -> list[str]:
    return [str(item) for item in data] if isinstance(data, list) else []


def scalar_tags(row: dict) -> dict[str, float]:
    """An epoch's metrics row (train_loss, val_accuracy, lr, seconds, ...) under TensorBoard tags."""
    tags = {}
    for key, number in row.items():
        if key == "epoch" or not isinstance(number, (int, float)):
            continue
        if key == "lr":
            tags["lr"] = number
        elif key == "seconds":
            tags["time/epoch_seconds"] = number
        else:
            split, _, name = key.partition("_")
            if split in ("train", "val", "test") and name:
                tags[f"{name}/{split}"] = number
    return tags


def hparams_of(cfg, *, seed: int | None = None) -> dict:
    """The composed config as flat ``group.key`` hyperparameters (numbers, strings, booleans)."""
    from omegaconf import OmegaConf

    plain = OmegaConf.to_container(cfg, resolve=True) if not isinstance(cfg, dict) else cfg
    flat: dict = {}

    def walk(prefix: str, node) -> None:
        if prefix in _NOT_HPARAMS:
            return
        if isinstance(node, dict):
            for key, child in node.items():
                walk(f"{prefix}.{key}" if prefix else str(key), child)
        elif isinstance(node, bool) or isinstance(node, (int, float, str)):
            flat[prefix] = node
        else:  # lists, None
            flat[prefix] = str(node) if node is not None else "null"

    walk("", plain)
    if seed is not None:
        flat["trainer.seed"] = seed
    return flat


class _Writer:
    """A SummaryWriter with the HParams session written into the run's own events file (not a
    sub-run per call, as SummaryWriter.add_hparams does), so every run and fold is one session."""

    def __init__(self, folder: Path, flush_secs: int = 30, purge_step: int | None = None):
        from torch.utils.tensorboard import SummaryWriter

        # A long queue: the training thread hands events over and never waits for the writer thread.
        self.summary = SummaryWriter(log_dir=str(folder), max_queue=1000, flush_secs=flush_secs,
                                     purge_step=purge_step)
        self.closed = False

    def session_start(self, hparams: dict) -> None:
        from tensorboard.plugins.hparams import metadata, plugin_data_pb2

        info = plugin_data_pb2.SessionStartInfo(start_time_secs=time.time())
        for key, item in hparams.items():
            if isinstance(item, bool):
                info.hparams[key].bool_value = item
            elif isinstance(item, (int, float)):
                info.hparams[key].number_value = item
            else:
                info.hparams[key].string_value = str(item)
        self._hparams_summary(metadata.SESSION_START_INFO_TAG,
                              plugin_data_pb2.HParamsPluginData(session_start_info=info,
                                                                version=metadata.PLUGIN_DATA_VERSION))

    def session_end(self, status: str) -> None:
        from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

        code = {"finished": api_pb2.STATUS_SUCCESS, "failed": api_pb2.STATUS_FAILURE,
                # The HParams API has no "aborted": an interrupted run is shown as unknown.
                "interrupted": api_pb2.STATUS_UNKNOWN}[status]
        info = plugin_data_pb2.SessionEndInfo(status=code, end_time_secs=time.time())
        self._hparams_summary(metadata.SESSION_END_INFO_TAG,
                              plugin_data_pb2.HParamsPluginData(session_end_info=info,
                                                                version=metadata.PLUGIN_DATA_VERSION))

    def _hparams_summary(self, tag: str, data) -> None:
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.plugins.hparams import metadata

        summary = Summary(value=[Summary.Value(tag=tag, metadata=metadata.create_summary_metadata(data))])
        self.summary._get_file_writer().add_summary(summary)

    def scalars(self, tags: dict, step: int) -> None:
        for tag, number in tags.items():
            self.summary.add_scalar(tag, number, step)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.summary.close()


class RunLogger:
    """Everything one run (or one fold) writes to TensorBoard, in its run folder (logger=tensorboard;
    ``settings``: TensorBoardSettings), one of the loggers of loggers.py.

    ``close`` ends the HParams session as failed or interrupted when training raises; ``finish``
    ends it as finished after the last figures."""

    def __init__(self, settings, run_dir: Path, cfg, spec, *, monitor: str, seed: int, out=console,
                 outcome_figure: bool = True):
        self.settings = settings
        # The end's confusion matrix or predicted-vs-true figure; the folds of a cross-validation
        # leave it to the out-of-fold figure of its cv_mean run (one drawing instead of k).
        self.outcome_figure = outcome_figure
        self.run_dir = Path(run_dir)
        self.cfg = cfg
        self.spec = spec
        self.monitor = monitor
        self.seed = seed
        self.out = out
        self.writer: _Writer | None = None
        self.train_size = 0
        self.model = None
        self.optimizer = None
        self._steps: list[tuple[int, object, float]] = []  # per-step points not yet written
        self._steps_written = time.monotonic()

    # ------------------------------------------------------------------ start

    def start(self, model, optimizer, data, device, first_epoch: int = 1, history=()) -> None:
        """Open the events file; write the config, the HParams session, and (once) the graph
        and the sample images. A resumed run (``first_epoch`` > 1) hides the events a killed
        run logged past its checkpoint, so every curve goes on without a doubled stretch (its
        ``history`` is in the events file already)."""
        from omegaconf import OmegaConf

        self.model, self.optimizer = model, optimizer
        self.train_size = len(data.train)
        # Per-step tags count optimizer steps, not epochs: purging by epoch would hide them all.
        purge = first_epoch if first_epoch > 1 and not self.step_every else None
        self.writer = _Writer(events_folder(self.run_dir), purge_step=purge)
        self.writer.session_start(hparams_of(self.cfg, seed=self.seed))
        text = self.writer.summary.add_text
        text("config", _code_block(OmegaConf.to_yaml(self.cfg, resolve=True)), 0)
        overrides = self.run_dir / ".hydra" / "overrides.yaml"
        if overrides.exists():
            text("overrides", _code_block(overrides.read_text()), 0)
        if self.settings.graph:
            self._graph(model, data, device)
        if self.settings.figures and _is_image(self.spec, data.train.x):
            self._sample_images(data)

    def _graph(self, model, data, device) -> None:
        from dltrain.train.staging import rows, to_device

        example = to_device(rows(data.train.x, slice(0, 2)), device)
        was_training = model.training
        model.eval()  # tracing runs the model: in eval mode batch norm and dropout are left alone
        try:
            with warnings.catch_warnings():  # torch.jit.trace's deprecation notice is not the user's concern
                warnings.simplefilter("ignore", FutureWarning)
                self.writer.summary.add_graph(model, example)
        except Exception as error:  # a model jit cannot trace still trains; say so once
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            self.out.print(f"[yellow]note:[/yellow] logger.graph: could not trace the model ({first}).")
        finally:
            model.train(was_training)

    def _sample_images(self, data) -> None:
        import torch

        from dltrain.train import figures
        from dltrain.train.staging import rows, to_device

        count = min(self.settings.max_images, len(data.train))
        images = to_device(rows(data.train.x, slice(0, count)), torch.device("cpu")).float().numpy()
        labels = data.train.y[:count].cpu().numpy()
        captions = [self._class_name(label) for label in labels]
        picture = figures.image_grid(images, captions, title="Training samples (as the model sees them)")
        self.writer.summary.add_image("images/train_samples", picture, 0, dataformats="HWC")

    # ------------------------------------------------------------------ during training

    @property
    def step_every(self) -> int:
        return self.settings.log_every_n_steps

    def epoch_end(self, epoch: int, row: dict) -> None:
        self._write_steps()
        tags = scalar_tags(row)
        if row.get("seconds"):
            tags["throughput/samples_per_second"] = self.train_size / row["seconds"]
        self.writer.scalars(tags, epoch)
        every = self.settings.histograms_every_n_epochs
        if every and epoch % every == 0:
            for name, parameter in self.model.named_parameters():
                self.writer.summary.add_histogram(f"weights/{name}", parameter.detach(), epoch)
                if parameter.grad is not None:
                    self.writer.summary.add_histogram(f"gradients/{name}", parameter.grad, epoch)

    def flush(self) -> None:
        """Put what is logged so far on disk (called whenever a checkpoint is written, so that a
        run killed later resumes with its curves intact up to that checkpoint)."""
        if self.writer is not None:
            self._write_steps()
            self.writer.summary.flush()

    def step(self, step: int, loss) -> None:
        """Every ``log_every_n_steps`` optimizer steps: keep the batch's loss (a tensor, still on
        the device) and the learning rate. They are read and written in batches, at the end of
        the epoch or every 64 points or 10 seconds: one host-device sync per batch instead of one
        per point, and the writer thread is woken as seldom."""
        self._steps.append((step, loss, self.optimizer.param_groups[0]["lr"]))
        if len(self._steps) >= 64 or time.monotonic() - self._steps_written > 10:
            self._write_steps()

    def _write_steps(self) -> None:
        if self._steps:
            import torch

            losses = torch.stack([loss for _, loss, _ in self._steps]).float().cpu().tolist()
            for (step, _, lr), loss in zip(self._steps, losses):
                self.writer.scalars({"step/loss_train": loss, "step/lr": lr}, step)
            self._steps.clear()
        self._steps_written = time.monotonic()

    # ------------------------------------------------------------------ the end

    def finish(self, result, data, member) -> None:
        """Test metrics and the best value at the last epoch, the end-of-run figures, the
        session's end; then close the events file."""
        try:
            last = result.epochs_run
            tags = scalar_tags({f"test_{k}": v for k, v in (result.test or {}).items()})
            tags[f"best/{self.monitor}"] = result.best[self.monitor]
            tags["best/epoch"] = result.best_epoch
            self.writer.scalars(tags, last)
            if self.settings.figures:
                self._end_figures(result, data, member, last)
        finally:
            self.close("finished")

    def _end_figures(self, result, data, member, step: int) -> None:
        import numpy as np
        import torch

        from dltrain.train import figures
        from dltrain.train.staging import rows, to_device

        split, name = (data.val, "validation") if data.val is not None else (data.train, "training")
        scores = result.val_scores if data.val is not None else None
        if scores is None:
            scores = member.predict_scores(split.x).numpy()
        truth = split.y.cpu().numpy()
        spec = self.spec
        add_image = self.writer.summary.add_image
        if spec.task == "regression":
            truth = TargetTransform.of(spec).decode(truth)
        if self.outcome_figure:  # a fold leaves it to the cross-validation's out-of-fold one
            tag, picture = figures.outcome(spec.task, scores, truth, spec.class_names,
                                           rows=f"{name} rows (epoch {step})")
            add_image(tag, picture, step, dataformats="HWC")
        if spec.task == "regression" or not _is_image(spec, split.x):
            return
        probabilities = np.column_stack([1 - scores, scores]) if spec.task == "binary" else scores
        predicted = probabilities.argmax(axis=1)
        names = [self._class_name(c) for c in range(max(spec.num_classes, 2))]
        true_probability = probabilities[np.arange(len(truth)), truth.astype(np.int64)]
        wrong = np.flatnonzero(predicted != truth)
        worst = wrong[np.argsort(true_probability[wrong], kind="stable")][: self.settings.max_images]
        if len(worst) == 0:
            return
        images = to_device(rows(split.x, worst), torch.device("cpu")).float().numpy()
        captions = [f"pred {names[predicted[i]]} ({probabilities[i, predicted[i]]:.2f})\n"
                    f"true {names[int(truth[i])]}" for i in worst]
        picture = figures.image_grid(
            images, captions, caption_colors=["firebrick"] * len(worst),
            title=f"Worst misclassified {name} images: {len(wrong)} wrong of {len(truth)} (epoch {step})")
        add_image("figures/worst_misclassified", picture, step, dataformats="HWC")

    def close(self, status: str) -> None:
        if self.writer is not None and not self.writer.closed:
            self._write_steps()  # the points of an epoch that did not end
            self.writer.session_end(status)
            self.writer.close()

    def _class_name(self, label) -> str:
        names = self.spec.class_names
        index = int(label)
        return str(names[index]) if 0 <= index < len(names) else str(index)


def _is_image(spec, x) -> bool:
    return spec.kind == "image" and not isinstance(x, tuple) and len(x.shape) == 4


def _code_block(text: str) -> str:
    # TensorBoard renders text as Markdown: four spaces keep YAML's lines and indentation.
    return "\n".join("    " + line for line in text.rstrip().splitlines())


# --------------------------------------------------------------------------- cross-validation

CV_MEAN = "cv_mean"


def write_cv_mean(cfg, settings, fold_dirs: list[Path], run_dir: Path, outcome=None) -> Path | None:
    """The ``cv_mean`` run of a cross-validation: each epoch's metrics averaged over the folds
    that reached it, under the same tags as the folds (so the mean curve overlays them), an
    HParams session of its own, and (``outcome``: task, scores, truth, class names of the
    out-of-fold predictions) the confusion matrix or predicted-vs-true figure of every row
    predicted by the model that did not train on it. Returns its folder (None without
    logger=tensorboard, or for one fold)."""
    if settings.logger.tensorboard is None or len(fold_dirs) < 2:
        return None
    histories = [_history(Path(f) / "metrics.json") for f in fold_dirs]
    folder = Path(run_dir) / CV_MEAN
    writer = _Writer(folder)
    try:
        # No trainer.seed: each fold has its own and a mean has none (a placeholder string would
        # turn every run's seed into text in the HParams dashboard).
        hparams = hparams_of(cfg)
        hparams.pop("trainer.seed", None)
        writer.session_start(hparams)
        writer.summary.add_text("folds", "\n".join(f"- {Path(f).name}" for f in fold_dirs), 0)
        last = max((len(h) for h in histories), default=0)
        for epoch in range(1, last + 1):
            rows = [h[epoch - 1] for h in histories if len(h) >= epoch]
            keys = [k for k in rows[0] if all(isinstance(r.get(k), (int, float)) for r in rows)]
            mean = {k: sum(r[k] for r in rows) / len(rows) for k in keys}
            tags = scalar_tags(mean)
            tags["cv/folds"] = len(rows)
            writer.scalars(tags, epoch)
        if outcome is not None and settings.logger.tensorboard.figures:
            from dltrain.train import figures

            task, scores, truth, class_names = outcome
            tag, picture = figures.outcome(task, scores, truth, class_names,
                                           rows=f"out-of-fold rows ({len(truth)})")
            writer.summary.add_image(tag, picture, last, dataformats="HWC")
        writer.session_end("finished")
    finally:
        writer.close()
    return folder


def _history(metrics_path: Path) -> list[dict]:
    """A fold's epoch rows from its metrics.json (an edited file's unreadable rows left out)."""
    history = (read_json_object(metrics_path) or {}).get("history")
    return [row for row in history if isinstance(row, dict)] if isinstance(history, list) else []
