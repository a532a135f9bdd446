"""The dltrain command line (Typer): parse words, call the library, print. No tensors here, and
no heavy import at start-up, so ``dltrain --help`` is instant."""

from __future__ import annotations

import functools
from typing import List, Optional

import typer

from dltrain.errors import (ENVIRONMENT_EXIT_CODE, DltrainError, RunInterrupted, environment_sentence,
                            run_folder_of)
from dltrain.files import RunLock, write_atomic

TRACEBACK = "traceback.txt"  # a bug's traceback, in the run folder it stopped

app = typer.Typer(
    name="dltrain",
    help=(
        "Configuration-driven deep-learning training. Every command takes Hydra overrides: "
        "[bold]key=value[/bold] to change a setting, [bold]group=option[/bold] to pick a config "
        "(model=mlp), [bold]+key=value[/bold] to add one, [bold]~key[/bold] to delete one.\n\n"
        "Start with [bold]dltrain fit[/bold] (an MLP on the embedded digits) and "
        "[bold]dltrain list[/bold] (everything you can pick)."
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
    add_completion=False,
    pretty_exceptions_enable=False,
)

_state = {"debug": False}

OVERRIDES_HELP = "Hydra overrides such as model=mlp optimizer.lr=0.01 'model.hidden_sizes=[64,32]'."
_OVERRIDE_CONTEXT = {"allow_extra_args": False, "ignore_unknown_options": True}

_GROUP_ALIASES = {
    "datasets": "data", "dataset": "data", "models": "model", "losses": "loss",
    "optimizers": "optimizer", "schedulers": "scheduler", "recipes": "recipe",
    "trainers": "trainer",
    "loggers": "logger",
}


def _user_errors(command):
    """Whatever stops a command ends in one sentence on stderr, never a traceback (those only with
    --debug): a user error (exit 2), a stop request (130, 143: how to resume), a second Ctrl-C
    (130), what the machine threw, a full disk or a deleted folder (1), a bug (1: the sentence
    names the file that holds its traceback)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except DltrainError as error:
            if _state["debug"]:
                raise
            _say_error(str(error))
            raise typer.Exit(error.exit_code) from None
        except RunInterrupted as stopped:
            from dltrain.console import error_console

            error_console.print(f"[bold yellow]{stopped}[/bold yellow]", soft_wrap=True)
            error_console.print(f"Resume with: dltrain {command.__name__} resume={stopped.run_dir}",
                                soft_wrap=True)
            raise typer.Exit(stopped.exit_code) from None
        except KeyboardInterrupt:
            if _state["debug"]:
                raise
            from dltrain.console import error_console

            error_console.print("[bold yellow]Stopped at once by Ctrl-C.[/bold yellow]", soft_wrap=True)
            raise typer.Exit(130) from None
        except Exception as error:
            if _state["debug"]:
                raise
            sentence = environment_sentence(error)
            if sentence is None:
                where = _save_traceback(error)
                first = (str(error).strip().splitlines() or [""])[0][:300]
                sentence = (f"dltrain stopped on an unexpected error ({type(error).__name__}"
                            + (f": {first}" if first else "") + f"), a bug: its traceback is in {where} "
                            f"(dltrain --debug shows it here).")
            _say_error(sentence)
            raise typer.Exit(ENVIRONMENT_EXIT_CODE) from None

    return wrapper


def _say_error(sentence: str) -> None:
    from rich.markup import escape  # a sentence may hold brackets: pip install 'dltrain[search]'

    from dltrain.console import error_console

    error_console.print(f"[bold red]Error:[/bold red] {escape(sentence)}", soft_wrap=True)


def _save_traceback(error: BaseException) -> str:
    """Write ``error``'s traceback to traceback.txt in the run folder it escaped from, or to a
    new file in the temporary folder when there is none (or it cannot be written); its path."""
    import os
    import sys
    import tempfile
    import traceback
    from pathlib import Path

    from dltrain import __version__

    text = (f"dltrain {__version__}, Python {sys.version.split()[0]}\n"
            f"command: {' '.join(sys.argv)}\n\n" + "".join(traceback.format_exception(error)))
    folder = run_folder_of(error)
    if folder is not None and Path(folder).is_dir():
        try:
            with RunLock(Path(folder)):  # one writer: another process may have taken the folder since
                write_atomic(Path(folder) / TRACEBACK, text)
            return str(Path(folder) / TRACEBACK)
        except (OSError, DltrainError):
            pass
    try:
        handle, path = tempfile.mkstemp(prefix="dltrain-traceback-", suffix=".txt")
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
    except OSError as refused:
        return f"no file ({tempfile.gettempdir()} cannot be written either: {refused.strerror})"
    return path


@app.callback()
def _main_options(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors."),
) -> None:
    _state["debug"] = debug


@app.command(context_settings=_OVERRIDE_CONTEXT)
@_user_errors
def fit(
    overrides: Optional[List[str]] = typer.Argument(None, help=OVERRIDES_HELP, show_default=False),
    multirun: bool = typer.Option(
        False, "--multirun", "-m", help="Sweep: run every combination of comma-separated values."
    ),
) -> None:
    """Train a model, one run folder per run under outputs/.

    [bold]Examples[/bold]

      dltrain fit                                   [dim]# MLP on embedded digits[/dim]

      dltrain fit recipe=linear_regression          [dim]# the y = 2x toy[/dim]

      dltrain fit model=softmax optimizer=sgd optimizer.lr=0.1 trainer.epochs=30

      dltrain fit data=csv data.path=houses.csv data.target=Price

      dltrain fit 'model.hidden_sizes=[64,32]' regularization=l2 scheduler=cosine

      dltrain fit -m optimizer.lr=0.1,0.01,0.001    [dim]# a sweep, ranked in one table[/dim]

      dltrain fit -m hydra/launcher=joblib optimizer.lr=0.1,0.01 model=mlp,softmax   [dim]# in parallel[/dim]

      dltrain fit trainer.devices=4                 [dim]# data-parallel: 4 GPUs (DDP)[/dim]

      dltrain fit data.batch_size=32 trainer.accumulate_grad_batches=4   [dim]# steps like batches of 128[/dim]

      dltrain fit data=wine loss.class_weights=auto trainer.save_top_k=3   [dim]# balanced classes, 3 best kept[/dim]

      dltrain fit trainer.deterministic=true        [dim]# the same numbers on every run (GPU too)[/dim]
    """
    if multirun:
        from dltrain.commands.sweep import run_sweep

        run_sweep("fit", list(overrides or []))  # every point in its own folder, then one ranked table
        return
    from dltrain.commands.fit import fit as run

    run(list(overrides or []))


@app.command(context_settings=_OVERRIDE_CONTEXT)
@_user_errors
def cv(
    overrides: Optional[List[str]] = typer.Argument(None, help=OVERRIDES_HELP, show_default=False),
    multirun: bool = typer.Option(
        False, "--multirun", "-m",
        help="Sweep: one whole cross-validation per combination of comma-separated values.",
    ),
) -> None:
    """Cross-validate: k folds, each a fresh model in its own fold_N folder; mean ± std per metric.

    Takes every [bold]fit[/bold] override. Writes cv_summary.json, cv_summary.csv and
    oof_predictions.csv in one run folder under outputs/.

    [bold]Examples[/bold]

      dltrain cv k=5                                [dim]# MLP on embedded digits, stratified[/dim]

      dltrain cv k=10 model=mlp data=csv data.path=houses.csv data.target=Price

      dltrain cv recipe=house_prices_kfold data.path=train.csv   [dim]# the textbook protocol[/dim]

      dltrain cv cv.strategy=group cv.group_column=patient data=csv data.path=visits.csv

      dltrain cv cv=repeated cv.refit=true          [dim]# 3 x 5 folds, then train on all rows[/dim]

      dltrain cv cv.fold=2                          [dim]# one fold alone[/dim]

      dltrain cv hydra/launcher=joblib              [dim]# folds in parallel processes[/dim]

      dltrain cv -m optimizer.lr=0.1,0.01           [dim]# a sweep of cross-validations[/dim]

      dltrain cv -m recipe=search_mlp_digits        [dim]# Optuna search, each trial a CV[/dim]
    """
    if multirun:  # each point a whole cross-validation (its folds inside its folder), ranked by its mean
        from dltrain.commands.sweep import run_sweep

        run_sweep("cv", list(overrides or []))
        return
    from dltrain.commands.cv import cv as run

    run(list(overrides or []))


@app.command(context_settings=_OVERRIDE_CONTEXT)
@_user_errors
def tune(
    overrides: Optional[List[str]] = typer.Argument(None, help=OVERRIDES_HELP, show_default=False),
    multirun: bool = typer.Option(False, "--multirun", "-m", hidden=True),
) -> None:
    """Tune: many hyperparameter points trained at once, the weak ones dropped early, the best as a recipe.

    Samples tune.points points of tune.space (Hydra's Optuna-sweeper syntax), trains each on k
    folds (k=3 unless given), the points of one model shape stacked as one population, and keeps
    the best 1/eta of each population after every rung (successive halving). Writes tune.csv,
    TensorBoard HParams (hparams/) and best_recipe.yaml in one run folder under outputs/.

    [bold]Examples[/bold]

      dltrain tune                                  [dim]# the default space on the embedded digits[/dim]

      dltrain tune tune.points=48 trainer.epochs=27 [dim]# rungs end at epochs 3, 9, 27[/dim]

      dltrain tune optimizer.lr='tag(log, interval(1e-4, 1e-1))' 'model.hidden_sizes=choice([64],[128,64])'

      dltrain tune tune.space.model.dropout=null    [dim]# leave a setting out of the search[/dim]

      dltrain tune tune.sampler=tpe                 [dim]# Optuna's TPE (pip install 'dltrain[search]')[/dim]

      dltrain tune hydra/launcher=joblib            [dim]# each population a job: in parallel processes[/dim]

      dltrain tune resume=outputs/DATE/TIME         [dim]# after Ctrl-C: on from the last rung's end[/dim]

      dltrain cv recipe=outputs/DATE/TIME/best_recipe.yaml   [dim]# rerun the best point[/dim]
    """
    if multirun:
        raise DltrainError("dltrain tune searches by itself and cannot run under -m; give the space as "
                           "tune.space (or KEY=interval(...) words) to one dltrain tune.")
    from dltrain.commands.tune import tune as run

    run(list(overrides or []))


@app.command("config", context_settings=_OVERRIDE_CONTEXT)
@_user_errors
def show_config(
    overrides: Optional[List[str]] = typer.Argument(None, help=OVERRIDES_HELP, show_default=False),
) -> None:
    """Print the composed config (YAML) that [bold]fit[/bold] would run, without training.

    [bold]Examples[/bold]

      dltrain config

      dltrain config recipe=logistic_regression optimizer.lr=0.5
    """
    from rich.syntax import Syntax

    from dltrain.config import compose, to_yaml
    from dltrain.console import console

    cfg = compose(list(overrides or []))
    console.print(Syntax(to_yaml(cfg), "yaml", theme="ansi_dark", background_color="default"))


@app.command("model", context_settings=_OVERRIDE_CONTEXT)
@_user_errors
def model_summary(
    overrides: Optional[List[str]] = typer.Argument(None, help=OVERRIDES_HELP, show_default=False),
) -> None:
    """Show the model that [bold]fit[/bold] would train, layer by layer, without training.

    Builds the model from the config and the shape of the configured data, runs one training
    batch through it and prints each layer's output shape and parameters (all of them and the
    trainable ones), with totals. Writes nothing.

    [bold]Examples[/bold]

      dltrain model                                 [dim]# the MLP on the embedded digits[/dim]

      dltrain model model=cnn data=digits_images

      dltrain model recipe=mnist_lstm

      dltrain model model=resnet data=digits_images model.batch_norm=false
    """
    from dltrain.commands.model_summary import model_summary as show

    show(list(overrides or []))


@app.command("data", context_settings=_OVERRIDE_CONTEXT)
@_user_errors
def data_view(
    overrides: Optional[List[str]] = typer.Argument(None, help=OVERRIDES_HELP, show_default=False),
    rows: int = typer.Option(5, "--rows", "-n", help="Rows of the preprocessed training table to show."),
) -> None:
    """Show what the model will see: the data prepared exactly as [bold]fit[/bold] prepares it.

    The same loader, train/validation split and preprocessing (fitted on the training rows) as
    fit: rows per split, the task, the classes and their counts (or the target's range), the
    input shape, the features after preprocessing by name, and the first --rows rows of the
    preprocessed training table (missing values filled, categories one-hot, standardized). For
    images it writes a grid of training samples to outputs/data/DATE/TIME/samples.png; for text
    it shows the vocabulary size and a few training texts as tokens. Trains nothing.

    [bold]Examples[/bold]

      dltrain data                                  [dim]# the embedded digits, 64 pixel features[/dim]

      dltrain data data=csv data.path=train.csv data.target=SalePrice --rows 10

      dltrain data recipe=poly_fit                  [dim]# the features x, x^2/2!, x^3/3![/dim]

      dltrain data data=digits_images               [dim]# and a PNG of sample images[/dim]

      dltrain data data=text_csv                    [dim]# vocabulary and tokenised examples[/dim]
    """
    from dltrain.commands.data_view import data_view as show

    show(list(overrides or []), rows)


@app.command("lr-find", context_settings=_OVERRIDE_CONTEXT)
@_user_errors
def lr_find(
    overrides: Optional[List[str]] = typer.Argument(None, help=OVERRIDES_HELP, show_default=False),
) -> None:
    """Find a learning rate: the range test (Smith 2015, as fastai and Lightning run it).

    Trains the model [bold]fit[/bold] would build on its training rows for 100 steps while the
    lr grows exponentially from 1e-7 to 10, smooths the loss, stops once it passes 4 times its
    lowest value, and suggests the lr where the smoothed loss falls fastest. Prints the
    suggestion and writes the curve (lr_find.png) and its values (lr_find.json) to
    outputs/lr_find/DATE/TIME/. [bold]trainer.lr_find=true[/bold] does this at the start of a fit
    (of each fold, in cv) and trains with the suggestion.

    [bold]Examples[/bold]

      dltrain lr-find                               [dim]# the MLP on the embedded digits, Adam[/dim]

      dltrain lr-find model=cnn data=digits_images optimizer=sgd

      dltrain fit trainer.lr_find=true              [dim]# find it, then train with it[/dim]

      dltrain cv k=5 trainer.lr_find=true           [dim]# each fold finds its own[/dim]
    """
    from dltrain.commands.lr_find import lr_find as run

    run(list(overrides or []))


@app.command("landscape", context_settings=_OVERRIDE_CONTEXT,
             short_help="Draw the loss over parameter space: a J(w, b) surface, or 1-D and 2-D slices of a trained run.")
@_user_errors
def landscape(
    words: Optional[List[str]] = typer.Argument(
        None, help="A run folder (then landscape.* options only), or Hydra overrides.", show_default=False),
) -> None:
    """Draw the loss over parameter space: a PNG, a CSV of the grid, a TensorBoard image.

    A model of one weight and one bias (the y = 2x toy): the exact surface J(w, b) and the curve
    J(w) at the best b, the grid's lowest point printed. Given overrides, before any training (the
    exhaustive search, in outputs/landscape/DATE/TIME/); given a trained run, around its final
    weights with the path the optimizer took (trajectory.json), in the run folder.

    Any other trained run: the loss on the line from its initial weights (init.pt) to its final
    ones (last.pt), and on the plane through the final weights along two filter-normalised random
    directions (Li et al. 2018; biases and batch norm left out of the directions, batch norm's
    running statistics the final model's), measured in eval mode on a fixed sample of training
    rows. Options: landscape.grid (points per axis), landscape.span (reach either side),
    landscape.rows, landscape.seed.

    [bold]Examples[/bold]

      dltrain landscape recipe=linear_regression    [dim]# J(w, b) of y = 2x before training[/dim]

      dltrain landscape outputs/2026-11-21/18-43-10_93f86a            [dim]# a trained run[/dim]

      dltrain landscape RUN_DIR landscape.grid=31 landscape.span=0.5 landscape.rows=2000
    """
    from dltrain.commands.landscape import landscape as draw

    draw(list(words or []))


@app.command("plot", context_settings=_OVERRIDE_CONTEXT,
             short_help="Draw training curves (loss and the monitored metric per epoch, EMA-smoothed) to a PNG.")
@_user_errors
def plot(
    words: Optional[List[str]] = typer.Argument(
        None, help="Run folders or cv folders, then smoothing=0.6 and output=FILE.png if wanted.",
        show_default=False),
) -> None:
    """Draw training curves to a PNG: loss and the monitored metric per epoch (train and
    validation), the per-step loss where it was logged (logger.tensorboard.log_every_n_steps).

    Curves are smoothed with TensorBoard's exponential moving average (debiased), the raw curve
    faint behind; smoothing=0 draws them raw. Several runs are overlaid, each labelled by the
    overrides that set it apart; a cv folder is drawn as its folds and their mean. One run: its
    curves.png; several: outputs/plot/DATE/TIME/curves.png, or output=FILE.
    [bold]trainer.plot=true[/bold] draws a run's (or a cv's) at the end of training.

    [bold]Examples[/bold]

      dltrain plot outputs/2026-11-21/18-43-10_93f86a

      dltrain plot RUN_A RUN_B smoothing=0.9        [dim]# two runs overlaid[/dim]

      dltrain plot CV_DIR smoothing=0 output=folds.png   [dim]# each fold and the mean, raw[/dim]

      dltrain fit trainer.plot=true                 [dim]# curves.png at the end of the fit[/dim]
    """
    from dltrain.commands.plot import plot as draw

    draw(list(words or []))


@app.command("list")
@_user_errors
def list_options(
    group: Optional[str] = typer.Argument(
        None, help="A config group: data, model, loss, optimizer, scheduler, regularization, "
        "trainer or recipe (plurals work too).", show_default=False,
    ),
) -> None:
    """List config groups and their options, each with a one-line description.

    [bold]Examples[/bold]

      dltrain list

      dltrain list models

      dltrain list recipes
    """
    from rich.markup import escape
    from rich.table import Table

    from dltrain.config import GROUP_TITLES, GROUPS, group_options
    from dltrain.console import console

    groups = GROUPS
    if group is not None:
        name = _GROUP_ALIASES.get(group, group)
        if name not in GROUPS:
            raise DltrainError(f"Unknown config group '{group}'; valid groups are: {', '.join(GROUPS)}.")
        groups = (name,)
    for name in groups:
        # Brackets are text here (logger=[tensorboard,csv], dltrain[mlflow]), not rich markup.
        table = Table(title=escape(f"{name}: {GROUP_TITLES[name]}  ({name}=OPTION)"), title_justify="left",
                      show_header=False, box=None, padding=(0, 2))
        table.add_column("option", style="bold cyan", no_wrap=True)
        table.add_column("description")
        for option, description in group_options(name).items():
            table.add_row(option, escape(description))
        console.print(table)
        console.print()



@app.command("runs")
@_user_errors
def runs(
    path: str = typer.Argument("outputs", help="The folder that holds the runs."),
    as_json: bool = typer.Option(False, "--json", help="Print the runs as JSON, for scripts."),
) -> None:
    """Show past runs and cross-validations, newest first.

    One row per run: when it started, its status (finished, failed, interrupted, running), model
    and data, the best value of the monitored metric (mean ± std over folds for a
    cross-validation), epochs, duration, and the command line that repeats it.

    [bold]Examples[/bold]

      dltrain runs

      dltrain runs outputs/multirun                 [dim]# the runs of sweeps only[/dim]

      dltrain runs --json | jq '.[0].best'           [dim]# the newest run's best value[/dim]
    """
    from pathlib import Path

    from dltrain.commands.runs import find_runs, table

    found = find_runs(Path(path))
    if as_json:
        import json

        typer.echo(json.dumps([run.to_dict() for run in found], indent=2))
        return
    from dltrain.console import console

    if not found:
        console.print(f"No runs under {path} yet; dltrain fit makes one.")
        return
    console.print(table(found, Path(path)))


@app.command("tb")
@_user_errors
def tensorboard(
    path: str = typer.Argument("outputs", help="The folder of runs (or one run folder) to show."),
    port: int = typer.Option(0, "--port", help="The port to serve on; 0 picks a free one."),
) -> None:
    """Start TensorBoard on your runs (on 127.0.0.1 only) and print its URL; Ctrl-C stops it.

    Every run and every fold of a cross-validation is a TensorBoard run: curves under loss/,
    <metric>/, lr, time/ and throughput/; the HParams tab compares runs side by side; figures
    and images show what the model gets wrong.

    [bold]Examples[/bold]

      dltrain tb                                    [dim]# everything under outputs/[/dim]

      dltrain tb outputs/2026-01-31                 [dim]# one day's runs[/dim]

      dltrain tb --port 6006

      ssh -t -L 6006:127.0.0.1:6006 gpu-box dltrain tb --port 6006   [dim]# from another machine[/dim]
    """
    from pathlib import Path

    from dltrain.commands.tb import serve

    if not 0 <= port <= 65535:
        raise DltrainError(f"--port must be 0 (a free port) or from 1 to 65535, got {port}.")
    serve(Path(path), port)


@app.command("eval", context_settings=_OVERRIDE_CONTEXT,
             short_help="Evaluate a trained model on its test or validation rows, or on data you name.")
@_user_errors
def evaluate(
    run: str = typer.Argument(..., help="A run folder (its best.pt) or a checkpoint file."),
    overrides: Optional[List[str]] = typer.Argument(
        None, help="Evaluate on other data: data=NAME or data.path=FILE ...", show_default=False),
) -> None:
    """Evaluate a trained model: on the data's test split when it has one, on the run's
    validation rows otherwise, or on the data you name; prints and saves eval.json (eval-DATA.json
    for other data).

    [bold]Examples[/bold]

      dltrain eval outputs/2026-11-21/18-43-10_93f86a

      dltrain eval outputs/2026-11-21/18-43-10_93f86a/last.pt

      dltrain eval RUN_DIR data.path=new_houses.csv       [dim]# every row of another CSV[/dim]
    """
    from dltrain.console import console
    from dltrain.commands.evaluate import evaluate_run

    evaluate_run(run, list(overrides or []), console)


@app.command("predict", context_settings=_OVERRIDE_CONTEXT,
             short_help="Predict for new rows, images or texts with the run's own preprocessing; writes a CSV.")
@_user_errors
def predict(
    run: str = typer.Argument(..., help="A run folder (its best.pt) or a checkpoint file."),
    options: Optional[List[str]] = typer.Argument(
        None, help="input=FILE (required) and output=FILE (default RUN/predictions.csv).",
        show_default=False),
) -> None:
    """Predict for new inputs with the run's own preprocessing: a CSV of rows (tabular models),
    a folder or list of images (image models), a CSV of texts (text models). Writes a CSV with
    the prediction and, for classifiers, one probability column per class.

    [bold]Examples[/bold]

      dltrain predict outputs/2026-11-21/18-43-10_93f86a input=new_rows.csv

      dltrain predict RUN_DIR input=photos/ output=labels.csv
    """
    from dltrain.console import console
    from dltrain.commands.evaluate import predict_run

    given = dict(option.split("=", 1) for option in options or [] if "=" in option)
    unknown = [o for o in options or [] if "=" not in o or o.split("=", 1)[0] not in ("input", "output")]
    if unknown:
        raise DltrainError(f"dltrain predict takes input=FILE and output=FILE, not {unknown[0]!r}.")
    if "input" not in given:
        raise DltrainError("dltrain predict needs input=FILE: a CSV of rows or texts, or a folder of images.")
    predict_run(run, given["input"], given.get("output"), console)


@app.command("export", context_settings=_OVERRIDE_CONTEXT,
             short_help="Export a trained model to ONNX or torch.export (.pt2), to use without dltrain.")
@_user_errors
def export(
    run: str = typer.Argument(..., help="A run folder (its best.pt), a checkpoint file, or a cv folder "
                              "(its refit model).", show_default=False),
    options: Optional[List[str]] = typer.Argument(
        None, help="format=onnx (default) or format=pt2; output=FILE (default RUN/export/model.onnx).",
        show_default=False),
) -> None:
    """Export a trained model to use without dltrain: ONNX (onnxruntime and other runtimes) or a
    torch.export program (.pt2, torch.export.load), any batch size.

    The model ends in its prediction: every class's probability, or the value in the target's
    units. Beside it: the run's preprocessing (preprocessing.json, the format the README
    documents) and FILE.json naming the inputs, the output and the classes. A cross-validation
    exports its refit model (cv.refit=true). ONNX needs pip install 'dltrain\\[export]'.

    [bold]Examples[/bold]

      dltrain export outputs/2026-11-21/18-43-10_93f86a            [dim]# RUN/export/model.onnx[/dim]

      dltrain export RUN_DIR format=pt2                           [dim]# RUN/export/model.pt2[/dim]

      dltrain export RUN_DIR output=deploy/iris.onnx

      dltrain export outputs/2026-11-21/19-02-55_0c1d2e           [dim]# a cv folder: its refit/[/dim]
    """
    from dltrain.commands.export import export_run
    from dltrain.console import console

    export_run(run, list(options or []), console)


@app.command("migrate")
@_user_errors
def migrate(
    run: str = typer.Argument(..., help="A run folder, a cv folder or a folder of runs (outputs/): "
                              "every run folder in it is converted.", show_default=False),
    trust: bool = typer.Option(False, "--trust", help="You made these run folders or vouch for them: "
                               "reading a pickle runs whatever code it holds."),
) -> None:
    """Re-save the preprocessor.pkl of runs made by an older dltrain as preprocessing.json (data).

    [bold]The risk[/bold]: a pickle is a program, and reading one runs whatever code it holds. An
    older dltrain saved a run's preprocessing as preprocessor.pkl; eval, predict and resume now
    refuse such a run, and this command is the one place dltrain reads a pickle, only with
    [bold]--trust[/bold]. Pass it only for run folders you made yourself or whose source you
    vouch for, never for one you downloaded or were sent. It converts RUN and every run folder
    below it (a cv folder's fold_N/ and refit/) and removes each pickle it converted.

    [bold]Examples[/bold]

      dltrain migrate outputs/2026-11-21/18-43-10_93f86a --trust

      dltrain migrate outputs --trust               [dim]# every run under outputs/[/dim]
    """
    from dltrain.commands.migrate import migrate as convert
    from dltrain.console import console

    convert(run, trust, console)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
