"""The wheel built from the checkout ships the jinja2 templates and py.typed (issue 2, item 1)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

# one worker builds the wheel once for the module (not once per xdist worker)
pytestmark = pytest.mark.xdist_group("wheel")

ROOT = Path(__file__).resolve().parent.parent


def build_wheel(outdir: Path) -> Path:
    """``python -m build --wheel``; without isolation when the isolated env cannot be set up."""
    command = [sys.executable, "-m", "build", "--wheel", "--outdir", str(outdir), str(ROOT)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        if importlib.util.find_spec("hatchling") is None:
            pytest.fail(
                "isolated wheel build failed and hatchling is not installed for --no-isolation:\n"
                + result.stdout[-2000:]
                + result.stderr[-2000:]
            )
        retry = subprocess.run(
            [*command, "--no-isolation"], capture_output=True, text=True, timeout=600
        )
        assert retry.returncode == 0, retry.stdout[-2000:] + retry.stderr[-2000:]
    wheels = list(outdir.glob("ovpn_toolkit-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = build_wheel(tmp_path_factory.mktemp("wheel"))
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
    return path


@pytest.fixture(scope="module")
def wheel_names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


@pytest.mark.slow
def test_wheel_ships_every_template(wheel_names: set[str]) -> None:
    assert "toolkit/templates/tunnelblick/Info.plist.j2" in wheel_names
    templates = [p for p in (ROOT / "templates").rglob("*") if p.is_file()]
    assert templates, "the checkout has no templates/ folder"
    for template in templates:
        name = "toolkit/templates/" + template.relative_to(ROOT / "templates").as_posix()
        assert name in wheel_names, f"{name} is missing from the wheel"


@pytest.mark.slow
def test_wheel_ships_package_and_marker(wheel_names: set[str]) -> None:
    assert "toolkit/py.typed" in wheel_names
    for module in (ROOT / "toolkit").rglob("*.py"):
        name = module.relative_to(ROOT).as_posix()
        assert name in wheel_names, f"{name} is missing from the wheel"
    assert not any(n.startswith("tests/") for n in wheel_names)


@pytest.mark.slow
def test_wheel_declares_the_console_script(wheel: Path, wheel_names: set[str]) -> None:
    entry_points = next(n for n in wheel_names if n.endswith(".dist-info/entry_points.txt"))
    with zipfile.ZipFile(wheel) as archive:
        text = archive.read(entry_points).decode()
    assert "[console_scripts]" in text
    assert "ovpn-toolkit = toolkit.cli:main" in text
