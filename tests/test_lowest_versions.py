"""The lowest transformers release that pyproject.toml allows passes the model tests, so the range is a tested one
and not a guess (the code that travels to the Hub runs under whatever transformers the user has)."""

import subprocess
import sys
import sysconfig

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10: the dev extra installs tomli
    import tomli as tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

pytestmark = pytest.mark.slow  # every test here is an end-to-end run

REPO = Path(__file__).resolve().parents[1]

# The Hub model code: what must work on the lowest transformers pyproject.toml allows.
MODEL_TESTS = ("test_modeling.py", "test_classification.py")


def lowest_allowed(package: str) -> str:
    """The `>=` bound of `package` in pyproject.toml's base dependencies (the one place they are declared)."""
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for line in dependencies:
        requirement = Requirement(line)
        if requirement.name == package:
            lower = [spec.version for spec in requirement.specifier if spec.operator == ">="]
            assert lower, f"pyproject.toml gives {package} no lower bound: {line}"
            return lower[0]
    raise AssertionError(f"{package} is not a dependency in pyproject.toml")


def test_model_tests_pass_on_the_lowest_allowed_transformers(tmp_path):
    version = lowest_allowed("transformers")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    # `--system-site-packages` sees the *base* interpreter's packages; when this suite runs inside a virtualenv
    # (as the README allows), torch and the rest live in that virtualenv: a .pth file adds its site-packages after
    # the new venv's own, so the one package installed there (transformers) shadows the active environment's.
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True
    )
    active = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    # `site.addsitedir`, not bare paths: the active environment's own .pth files (this package's editable install)
    # are processed too
    lines = [f"import site; site.addsitedir({path!r})" for path in active]
    (Path(site.stdout.strip()) / "_active_environment.pth").write_text("\n".join(lines) + "\n")
    install = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", f"transformers=={version}"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, f"pip could not install transformers=={version}:\n{install.stderr[-3000:]}"
    installed = subprocess.run(
        [python, "-c", "import transformers; print(transformers.__version__)"], capture_output=True, text=True
    )
    assert Version(installed.stdout.strip()) == Version(version), installed.stderr
    tests = subprocess.run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *(str(REPO / "tests" / name) for name in MODEL_TESTS)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert tests.returncode == 0, f"{MODEL_TESTS} fail on transformers {version}:\n{tests.stdout[-4000:]}"
