"""The README stays true: its smoke commands run, as written, on a fresh copy of the repo with an empty cache."""

import os
import shutil
import subprocess

import pytest
from conftest import REPO_ROOT
from readme_blocks import readme_block

from modeling_distilxlsr.corpus.synthesis import default_corpus_dir, ensure_corpus

pytestmark = pytest.mark.slow  # every test here is an end-to-end run


def test_readme_smoke_commands_run_on_a_fresh_checkout_with_no_data(tmp_path):
    """A fresh copy of the repo and a fresh home. The corpus the commands would make on first use is copied in from
    this machine's cache (made there once if missing: CI's main job has made it already): synthesising it again
    here cost most of this test, and first use itself is tested in test_corpus.py (saying so, then reusing)."""
    repo = tmp_path / "repo"
    shutil.copytree(REPO_ROOT, repo, ignore=shutil.ignore_patterns(".git", "out", "__pycache__", ".pytest_cache"))
    home = tmp_path / "home"
    shutil.copytree(
        ensure_corpus(default_corpus_dir()), home / ".cache" / "distilxlsr" / os.path.basename(default_corpus_dir())
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DISTILXLSR_CACHE", "PYTHONPATH")}
    env.update(HOME=str(home), HF_HUB_OFFLINE="1")
    commands = readme_block("smoke")
    assert len(commands) == 3 and commands[0].startswith("python train_distill.py")
    outputs = []
    for command in commands:
        result = subprocess.run(["bash", "-c", command], cwd=repo, env=env, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        outputs.append(result.stdout + result.stderr)
    assert "making the synthetic pt-BR corpus" not in outputs[0]  # the cache's corpus was found and used
    assert (home / ".cache" / "distilxlsr" / "corpus-pt-br-v2" / "test" / "metadata.csv").exists()
    assert (repo / "out" / "smoke" / "model.safetensors").exists()
    lines = (repo / "out" / "smoke-asr" / "test.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 100  # one line per test file
