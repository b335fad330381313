"""The distribution: one import name, every part inside it, installable from a wheel."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("paramstore-*.whl")
    return built


def test_wheel_installs_everything_under_the_paramstore_name(wheel: Path):
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith("-info")}
    assert top_level == {"paramstore"}
    for module in ("nd/__init__.py", "gluon/nn/__init__.py", "server/__init__.py",
                   "client/__init__.py", "proto/v1/paramstore_pb2.py"):
        assert f"paramstore/{module}" in names


def test_wheel_declares_the_console_script(wheel: Path):
    with zipfile.ZipFile(wheel) as archive:
        entry_points = next(n for n in archive.namelist() if n.endswith("entry_points.txt"))
        assert "paramstore = paramstore.client.cli:main" in archive.read(entry_points).decode()


def test_installed_wheel_imports_from_another_folder(wheel: Path, tmp_path: Path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
         str(wheel)],
        check=True,
        capture_output=True,
    )
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); import paramstore; "
        "from paramstore import nd, gluon; from paramstore.client import connect; "
        "print(paramstore.__file__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, str(target)], cwd=tmp_path, check=True,
        capture_output=True, text=True,
    )
    assert result.stdout.startswith(str(target))
