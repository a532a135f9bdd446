"""The configs travel with the package: a built wheel carries conf/ and recipes/ and an
installed dltrain composes from them."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    pytest.importorskip("hatchling")
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(out), str(REPO)], check=True)
    (path,) = out.glob("dltrain-*.whl")
    return path


def test_wheel_carries_every_config_and_recipe(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for source in [*(REPO / "conf").glob("*/*.yaml"), REPO / "conf" / "config.yaml"]:
        relative = source.relative_to(REPO / "conf").as_posix()
        assert f"dltrain/conf/{relative}" in names, relative
    for recipe in (REPO / "recipes").glob("*.yaml"):
        assert f"dltrain/conf/recipe/{recipe.name}" in names


def test_installed_wheel_composes_from_its_own_configs(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = (
        "import dltrain, dltrain.config as c\n"
        "print(dltrain.__file__); print(c.config_dir())\n"
        "cfg = dltrain.compose('recipe=linear_regression')\n"
        "assert cfg.data.name == 'linear_toy', cfg.data\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                            text=True, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    package_file, config_dir = result.stdout.split()
    assert package_file.startswith(str(site)) and config_dir.startswith(str(site))
