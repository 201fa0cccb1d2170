"""The package as a user installs it: ``python -m build`` makes the sdist and the wheel; the
wheel, installed into a fresh virtualenv (its dependencies from the index, nothing from this
checkout), runs ``cdc --help``, and pytest there finds the plugin's fixtures and runs a test
written with the test kit."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import textwrap
import zipfile
from pathlib import Path

import cdc

ROOT = Path(__file__).resolve().parents[2]

USER_TEST = """
from cdc import Change, Context, on_change
from cdc.testing import ChangeFactory, Outcome, run_handler

seen = []


@on_change("orders")
def react(change: Change, ctx: Context) -> None:
    seen.append(change.after["id"])


def test_a_handler_with_the_test_kit() -> None:
    change = ChangeFactory().insert("orders", {"id": 7})
    assert run_handler(react, change).outcome is Outcome.DONE
    assert seen == [7]
"""


def run(*args: str | Path, cwd: Path | None = None) -> str:
    proc = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_the_wheel_installs_and_runs_in_a_fresh_virtualenv(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    # The sdist first, then the wheel built from it: what the sdist leaves out, the wheel lacks.
    run(sys.executable, "-m", "build", "--outdir", dist, ROOT, cwd=tmp_path)
    version = cdc.__version__
    (wheel,) = dist.glob(f"reactive_cdc-{version}-py3-none-any.whl")
    (sdist,) = dist.glob(f"reactive_cdc-{version}.tar.gz")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    for module in ("cdc/cli/__init__.py", "cdc/schedule/__init__.py", "cdc/py.typed"):
        assert module in names
    assert any(n.startswith("cdc/jvm_poms/") and n.endswith("pom.xml") for n in names)
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    with tarfile.open(sdist) as tf:
        members = {m.name.split("/", 1)[1] for m in tf.getmembers() if "/" in m.name}
    assert {"LICENSE", "README.md", "pyproject.toml"} <= members

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    bin_ = venv / "bin"
    run(bin_ / "pip", "install", "--quiet", wheel, "pytest")
    assert "Usage: cdc" in run(bin_ / "cdc", "--help")
    shown = run(
        bin_ / "python",
        "-c",
        "import cdc, importlib.metadata as m; print(cdc.__file__, m.version('reactive-cdc'))",
        cwd=tmp_path,  # not this checkout's directory, which Python would import from
    )
    assert str(venv) in shown  # the installed copy, not this checkout
    assert shown.split()[-1] == version

    user = tmp_path / "user"
    user.mkdir()
    (user / "test_mine.py").write_text(textwrap.dedent(USER_TEST))
    fixtures = run(
        bin_ / "python", "-m", "pytest", "--fixtures", "-p", "no:cacheprovider", cwd=user
    )
    for fixture in ("cdc_stack", "cdc_settings", "cdc_pipelines"):
        assert fixture in fixtures
    passed = run(bin_ / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=user)
    assert "1 passed" in passed
