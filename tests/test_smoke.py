import pytest

from conftest import read_metrics, run_folders

pytestmark = pytest.mark.slow


def test_default_fit_reaches_95_percent_on_digits(cli):
    result = cli("fit")
    assert result.exit_code == 0, result.output
    (run_dir,) = run_folders()
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "finished"
    assert metrics["best"]["val_accuracy"] >= 0.95
