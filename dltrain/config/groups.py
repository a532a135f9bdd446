"""The config groups on disk: where conf/ is, the options of each group and their one-line
descriptions. The bottom of the config layer: composing and reading settings both use it."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

GROUPS = ("data", "model", "loss", "optimizer", "scheduler", "regularization", "trainer", "logger", "cv",
          "recipe")
GROUP_TITLES = {
    "data": "datasets",
    "model": "models",
    "loss": "losses",
    "optimizer": "optimizers",
    "scheduler": "learning-rate schedulers",
    "regularization": "regularization",
    "trainer": "trainer presets",
    "logger": "TensorBoard logging (logger=none turns it off)",
    "cv": "cross-validation for dltrain cv (k=N sets the number of folds)",
    "recipe": "recipes (complete presets)",
}


def config_dir() -> Path:
    """The folder holding config.yaml and the groups: inside the package when installed from
    a wheel, the repository's conf/ for an editable install or a source checkout."""
    package_dir = Path(__file__).resolve().parent.parent
    for candidate in (package_dir / "conf", package_dir.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise RuntimeError(f"dltrain's configs are missing: no conf/config.yaml next to {package_dir}")


@lru_cache(maxsize=None)
def group_options(group: str) -> dict[str, str]:
    """The options of a config group, each with the one-line description its YAML starts with."""
    folder = config_dir() / group
    options = {}
    for path in sorted(folder.glob("*.yaml")):
        options[path.stem] = _description(path)
    return options


def _description(path: Path) -> str:
    for line in path.read_text().splitlines():
        text = line.strip()
        if text.startswith("#") and not text.lstrip("# ").startswith("@package"):
            return text.lstrip("# ").strip()
    return ""
