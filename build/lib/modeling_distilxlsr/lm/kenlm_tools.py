"""KenLM's estimator (`lmplz`) and binariser (`build_binary`): found on PATH or beside Python, else built from
KenLM's own sources with cmake.

    python -m modeling_distilxlsr.lm.kenlm_tools          # builds them into the Python environment's bin/

Why build: the `kenlm` package on PyPI installs only the query module (what pyctcdecode loads), not the estimator,
and no maintained package ships `lmplz` (no Debian package either). Its source distribution holds the whole of KenLM,
so the build takes the sources from PyPI (with pip), needs cmake, a C++ compiler and the Boost headers
(program_options, system, thread, test; `install.sh` installs them with apt), and takes about half a minute.
"""

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

KENLM_VERSION = "0.3.0"
BINARIES = ("lmplz", "build_binary")


class KenLMNotFound(RuntimeError):
    pass


def find_binary(name: str) -> str:
    """Path of a KenLM program: on PATH, or beside the running Python (where `python -m ... kenlm_tools` puts it)."""
    beside_python = os.path.join(os.path.dirname(sys.executable), name)
    found = shutil.which(name) or (beside_python if os.access(beside_python, os.X_OK) else None)
    if not found:
        raise KenLMNotFound(
            f"KenLM's `{name}` was not found on PATH or in {os.path.dirname(sys.executable)}. Build it with "
            "`python -m modeling_distilxlsr.lm.kenlm_tools` (needs cmake, g++ and the Boost headers; `bash install.sh` "
            "does all of it)."
        )
    return found


def _sdist(version: str, work_dir: str) -> str:
    """KenLM's source distribution, fetched by pip (so pip's index, mirror and certificate settings apply)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:"]
        + ["--no-build-isolation", f"kenlm=={version}", "--dest", work_dir],
        check=True,
    )
    return next(os.path.join(work_dir, n) for n in os.listdir(work_dir) if n.endswith((".tar.gz", ".zip")))


def build_kenlm(bin_dir: str | None = None, version: str = KENLM_VERSION) -> list[str]:
    """Builds `lmplz` and `build_binary` and copies them to `bin_dir` (default: the directory of this Python)."""
    bin_dir = bin_dir or os.path.dirname(sys.executable)
    with tempfile.TemporaryDirectory() as work_dir:
        with tarfile.open(_sdist(version, work_dir)) as archive:
            archive.extractall(work_dir, filter="data")
        source = os.path.join(work_dir, f"kenlm-{version}")
        build = os.path.join(source, "build")
        os.makedirs(build)
        subprocess.run(["cmake", "..", "-DCMAKE_BUILD_TYPE=Release", "-DCOMPILE_TESTS=OFF"], cwd=build, check=True)
        jobs = str(os.cpu_count() or 2)
        subprocess.run(["make", "-j", jobs, *BINARIES], cwd=build, check=True)
        installed = []
        for name in BINARIES:
            target = os.path.join(bin_dir, name)
            shutil.copy2(os.path.join(build, "bin", name), target)
            installed.append(target)
    return installed


def main():
    try:
        print("KenLM already installed:", ", ".join(find_binary(name) for name in BINARIES))
    except KenLMNotFound:
        print("KenLM installed:", ", ".join(build_kenlm()))


if __name__ == "__main__":
    main()
