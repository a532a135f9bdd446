"""dltrain plot: TensorBoard's smoothing against a direct EMA, and the PNG of a fit, of two fits
and of a cv folder read back (commands/plot.py)."""

from __future__ import annotations

import json
import math
import shutil

import pytest

from dltrain.commands.plot import PNG, smooth
from tests.conftest import copy_run


def test_smoothing_is_the_debiased_ema():
    values = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0]
    weight = 0.6
    for n in range(1, len(values) + 1):  # sum of (1 - w) w^(n-k) v_k over k, over 1 - w^n
        direct = sum((1 - weight) * weight ** (n - k) * values[k - 1] for k in range(1, n + 1)) / (1 - weight ** n)
        assert smooth(values, weight)[n - 1] == pytest.approx(direct)
    assert smooth(values, 0.0) == values
    assert smooth([1.0, math.nan, 3.0], 0.5)[1] != smooth([1.0, math.nan, 3.0], 0.5)[1]  # NaN kept as it is
    assert smooth([1.0, math.nan, 3.0], 0.5)[2] == pytest.approx((0.25 * 1 + 0.5 * 3) / 0.75)


def _size(path) -> tuple[int, int]:
    from matplotlib.image import imread

    image = imread(path)
    return image.shape[1], image.shape[0]


def test_plot_a_fit_two_fits_and_a_cv_folder(cli, iris_fit_run):
    fit = copy_run(iris_fit_run)
    result = cli("plot", str(fit))
    assert result.exit_code == 0, result.output
    assert _size(fit / PNG) == (1040, 440)  # loss and accuracy per epoch, 5.2 x 4.4 inches each at 100 dpi

    other = fit.parent / "other"
    shutil.copytree(fit, other)
    (other / ".hydra" / "overrides.yaml").write_text("- data=iris\n- optimizer.lr=0.1\n")
    result = cli("plot", str(fit), str(other), "smoothing=0", "output=two.png")
    assert result.exit_code == 0, result.output
    assert _size("two.png") == (1040, 440)

    cv = fit.parent / "cv"
    for index in range(3):
        shutil.copytree(fit, cv / f"fold_{index}")
    (cv / "cv_summary.json").write_text(json.dumps({"status": "finished"}))
    result = cli("plot", str(cv))
    assert result.exit_code == 0, result.output
    assert _size(cv / PNG) == (1040, 440)

    refused = cli("plot", str(fit), "smoothing=1")
    assert refused.exit_code == 2 and "smoothing must be a number from 0" in refused.output
    refused = cli("plot", "nowhere")
    assert refused.exit_code == 2 and "'nowhere' is not a run folder" in refused.output
