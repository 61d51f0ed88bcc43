import contextlib
import io
import logging
import os
import pathlib
import runpy
import shutil
import subprocess
import sys
import textwrap
import traceback
import warnings

import filelock
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Under `pytest -n N` the N workers share the machine's cores: one thread each (and for the processes they
    # start), or 2 workers x 2 threads on 2 cores would fight for them (slower than one worker alone).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


SPEECH_FIXTURE = os.path.join(REPO_ROOT, "tests", "fixtures", "speech_pt_br.flac")


def speech(seconds: float, seed: int, sample_rate: int = 16_000):
    """`seconds` of pt-BR speech (the shipped fixture: three corpus voices, 11.8 s), from an offset `seed` picks:
    audio the VAD keeps, so that transcription decodes it (random noise is, rightly, found to hold no speech)."""
    import librosa
    import numpy as np
    import soundfile as sf

    audio, _ = sf.read(SPEECH_FIXTURE, dtype="float32")
    samples = int(seconds * 16_000)
    if samples > len(audio):
        audio = np.tile(audio, samples // len(audio) + 1)
    start = (seed * 23_456) % max(1, len(audio) - samples)
    clip = audio[start : start + samples]
    return clip if sample_rate == 16_000 else librosa.resample(clip, orig_sr=16_000, target_sr=sample_rate)


def tiny_teacher_config(**overrides):
    """A 4-layer XLSR-shaped wav2vec2 (pre-LN, CNN with bias and LayerNorm), small enough for CPU tests."""
    from transformers import Wav2Vec2Config

    fields = dict(
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16, 16, 16, 16, 16, 16, 16),
        conv_kernel=(10, 3, 3, 3, 3, 2, 2),
        conv_stride=(5, 2, 2, 2, 2, 2, 2),
        conv_bias=True,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        layerdrop=0.0,
        vocab_size=12,
    )
    fields.update(overrides)
    return Wav2Vec2Config(**fields)


def tiny_student_config(**overrides):
    from modeling_distilxlsr import DistilXLSRConfig

    fields = dict(pred_layer_ids=(2, 4))
    fields.update(overrides)
    return DistilXLSRConfig.from_teacher_config(tiny_teacher_config(), **fields)


@pytest.fixture
def tiny_teacher():
    from transformers import Wav2Vec2Model

    torch.manual_seed(0)
    return Wav2Vec2Model(tiny_teacher_config()).eval()


@pytest.fixture(scope="session")
def tiny_ctc_dir(tmp_path_factory):
    """A saved random-weight DistilXLSR CTC folder with the BP processor, and the model itself."""
    from modeling_distilxlsr import DistilXLSRForCTC
    from modeling_distilxlsr.models.audio_format import default_feature_extractor
    from modeling_distilxlsr.models.folder import save_for_hub
    from modeling_distilxlsr.text.normalizer import build_processor, build_vocab

    torch.manual_seed(0)
    processor = build_processor(build_vocab(), default_feature_extractor())
    model = DistilXLSRForCTC(tiny_student_config(vocab_size=len(processor.tokenizer), pad_token_id=0)).eval()
    path = tmp_path_factory.mktemp("ctc")
    save_for_hub(model, str(path), processor)
    return path, model


# Makes `import modeling_distilxlsr` fail in a fresh interpreter although the package is installed: what a Hub user
# without it sees (None in sys.modules is Python's documented way to make an import raise ImportError).
WITHOUT_OUR_PACKAGE = "import sys\nsys.modules['modeling_distilxlsr'] = None\n"


def run_fresh_python(code: str, cwd, timeout=600, with_package: bool = False) -> str:
    """Runs `code` in a new interpreter (cwd is not the repo, no PYTHONPATH) that cannot import our package, as a
    Hub user's would not, unless `with_package`."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["HF_HUB_OFFLINE"] = "1"
    env["HF_MODULES_CACHE"] = str(cwd / "hf_modules")
    prelude = "" if with_package else WITHOUT_OUR_PACKAGE
    result = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise AssertionError(f"fresh process failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def logits_of_a_hub_user(folder, wave, tmp_path, module_check: str) -> torch.Tensor:
    """The CTC logits of `wave` from `folder` loaded as a Hub user loads it: a fresh process, AutoModelForCTC with
    trust_remote_code, the folder's own code (our package cannot be imported there); `module_check` is a Python
    expression on `model` that must hold (which module the folder's code built)."""
    torch.save(wave, tmp_path / "wave.pt")
    run_fresh_python(
        f"""
        import sys, torch
        from transformers import AutoModelForCTC
        model = AutoModelForCTC.from_pretrained({str(folder)!r}, trust_remote_code=True).eval()
        assert sys.modules.get("modeling_distilxlsr") is None  # the folder's code, not our package
        assert {module_check}
        with torch.no_grad():
            torch.save(model(torch.load({str(tmp_path / "wave.pt")!r})).logits, {str(tmp_path / "out.pt")!r})
        """,
        cwd=tmp_path,
    )
    return torch.load(tmp_path / "out.pt")


@pytest.fixture(scope="session")
def tiny_teacher_dir(tmp_path_factory):
    """A saved tiny wav2vec2 teacher folder, as `--teacher` takes it."""
    from transformers import Wav2Vec2Model

    def make(path):
        torch.manual_seed(0)
        Wav2Vec2Model(tiny_teacher_config()).save_pretrained(path)

    # one folder for every worker: the runs `finished_run` makes name it, and the tests that resume them must too
    return str(made_once(tmp_path_factory, "teacher", make))


def save_tiny_ctc_teacher(path) -> str:
    """A tiny random-weight `Wav2Vec2ForCTC` with the BP character processor: a fine-tuned teacher's layout (its
    outputs are noise, which the mechanics of output distillation do not mind)."""
    from transformers import Wav2Vec2ForCTC

    from modeling_distilxlsr.models.audio_format import default_feature_extractor
    from modeling_distilxlsr.text.normalizer import build_processor, build_vocab

    torch.manual_seed(0)
    processor = build_processor(build_vocab(keep_apostrophe=False), default_feature_extractor())  # finetune_ctc's
    config = tiny_teacher_config(vocab_size=len(processor.tokenizer), pad_token_id=processor.tokenizer.pad_token_id)
    Wav2Vec2ForCTC(config).save_pretrained(path)
    processor.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_ctc_teacher_dir(tmp_path_factory):
    return save_tiny_ctc_teacher(tmp_path_factory.mktemp("ctc_teacher"))


def made_once(tmp_path_factory, name: str, make) -> pathlib.Path:
    """`make(path)` run once for the whole test run, also when pytest-xdist's workers each hold their own session:
    xdist's documented recipe (the workers' common temporary folder, a file lock, a mark that it is done). For what
    is expensive to make and read-only to the tests (corpora, a finished run that tests copy first)."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # shared by all workers of this run
    path, done = root / "made_once" / name, root / "made_once" / f"{name}.done"
    path.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(str(path) + ".lock"):
        if not done.exists():
            if path.exists():
                shutil.rmtree(path)  # a half-made one (an interrupted make)
            make(path)
            done.touch()
    return path


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory):
    """A small corpus from the real corpus maker: 60 sentences, each spoken once (about 2 s of synthesis)."""
    from modeling_distilxlsr.corpus.synthesis import make_corpus

    def make(path):
        make_corpus(str(path / "pt-br"), seed=0, quiet=True, num_sentences=60, dev_sentences=8, test_sentences=8,
                    utterances_per_sentence=1)  # fmt: skip

    return made_once(tmp_path_factory, "corpus", make) / "pt-br"


def write_parquet_stream(folder, clips: list[tuple[str, bytes]], num_shards: int = 4) -> str:
    """A local Hugging Face dataset of `num_shards` parquet files with the audio stored as encoded bytes: what
    `load_dataset(..., streaming=True)` reads the same way from the Hub."""
    import datasets

    rows = [{"bytes": data, "path": name} for name, data in clips]
    dataset = datasets.Dataset.from_dict({"audio": rows}).cast_column("audio", datasets.Audio(decode=False))
    os.makedirs(folder, exist_ok=True)
    for shard in range(num_shards):
        dataset.shard(num_shards, shard).to_parquet(
            os.path.join(folder, f"train-{shard:05d}-of-{num_shards:05d}.parquet")
        )
    return str(folder)


# Two real gloo DDP ranks on CPU (`accelerate launch --cpu --num_processes 2` would silently run one process).
TWO_CPU_RANKS = (
    "accelerate",
    "launch",
    "--multi_gpu",
    "--num_processes",
    "2",
    "--num_machines",
    "1",
    "--mixed_precision",
    "no",
    "--dynamo_backend",
    "no",
)
TWO_CPU_RANKS_ENV = {"ACCELERATE_USE_CPU": "1"}
# Tests that start several processes (DDP ranks, two "machines"): one xdist worker runs them all, one after another
# (`-n 2 --dist loadgroup`), so that two such launches never share the CPU's cores or accelerate's default port.
TWO_PROCESS_GROUP = pytest.mark.xdist_group("several_processes")


def run_script(
    args: list[str], timeout=600, env_extra=None, check=True, fresh_process=False
) -> subprocess.CompletedProcess:
    """Runs one of the repo's scripts as a user would, from the repo root: `python SCRIPT.py ...` and `python -m
    MODULE ...` inside this process (`run_in_process`: no fresh interpreter paying seconds of imports per run),
    anything else (`accelerate launch` with several ranks, bash) as a subprocess. `fresh_process`, or a PYTHONPATH
    in `env_extra` (it changes what imports, which only a new interpreter sees): a subprocess, for tests where the
    process is what is tested."""
    args = [str(arg) for arg in args]
    in_process = not fresh_process and "PYTHONPATH" not in (env_extra or {})
    python_script = (
        len(args) >= 2 and args[0] in (sys.executable, "python") and (args[1].endswith(".py") or args[1] == "-m")
    )
    if in_process and python_script:
        result = run_in_process(args[1:], env_extra)
    else:
        env = dict(os.environ, HF_HUB_OFFLINE="1", **(env_extra or {}))
        result = subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout[-5000:]}\n{result.stderr[-8000:]}"
        )
    return result


def run_in_process(args: list[str], env_extra=None) -> subprocess.CompletedProcess:
    """`python SCRIPT.py ARGS` or `python -m MODULE ARGS` in this interpreter, as torchtune's recipe tests run
    recipes (`runpy` with `sys.argv` set), and answered as `subprocess.run(capture_output=True, text=True)` would:
    the exit status (a `SystemExit` message printed as Python prints it; an exception as its traceback, status 1),
    stdout, and stderr with the log records and warnings the script would have printed there.

    Between runs the process-wide state a fresh interpreter would not carry is reset: accelerate's singletons
    (a second `Accelerator` would otherwise inherit the first one's device and precision), the working folder
    (the repo root, as for a user), the environment, `sys.argv` and `sys.path`, the root logger's handlers."""
    from accelerate.state import AcceleratorState, GradientState

    out, err = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
    root = logging.getLogger()
    saved = (os.getcwd(), dict(os.environ), list(sys.argv), list(sys.path), list(root.handlers), root.level)
    os.environ.update({"HF_HUB_OFFLINE": "1", **(env_extra or {})})
    os.chdir(REPO_ROOT)
    root.handlers = [handler]  # `logging.basicConfig` in the recipe then leaves them as they are
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    returncode = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            warnings.simplefilter("default")  # Python's defaults for a script, not pytest's capture
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=FutureWarning)
            warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: err.write(
                warnings.formatwarning(message, category, filename, lineno, line)
            )
            try:
                if args[0] == "-m":
                    sys.argv = [args[1], *args[2:]]
                    runpy.run_module(args[1], run_name="__main__", alter_sys=True)
                else:  # as `python SCRIPT.py` does: the script's folder first on the path (benchmarks import siblings)
                    sys.argv = list(args)
                    script = os.path.join(REPO_ROOT, args[0])
                    sys.path.insert(0, os.path.dirname(script))
                    runpy.run_path(script, run_name="__main__")
            except SystemExit as exit_:
                if exit_.code is None or isinstance(exit_.code, int):
                    returncode = exit_.code or 0
                else:
                    print(exit_.code, file=sys.stderr)
                    returncode = 1
            except Exception:
                traceback.print_exc(file=sys.stderr)
                returncode = 1
    finally:
        handler.flush()
        cwd, environ, argv, path, handlers, level = saved
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(environ)
        sys.argv, sys.path[:] = argv, path
        root.handlers, root.level = handlers, level
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
    return subprocess.CompletedProcess(args, returncode, out.getvalue(), err.getvalue())


# A tiny distillation run (with `tiny_teacher_dir`), for tests of the training script.
TINY_RUN = [
    "--pred_layer_ids",
    "2",
    "4",
    "--per_device_batch_size",
    "4",
    "--max_audio_samples",
    "32000",
    "--num_workers",
    "0",
    "--report_to",
    "none",
]


def distill(teacher_dir, train_data, output_dir, *extra, launcher=(sys.executable,), **kwargs):
    args = [
        *launcher,
        "train_distill.py",
        "--teacher",
        teacher_dir,
        "--train_data",
        str(train_data),
        "--output_dir",
        str(output_dir),
        *TINY_RUN,
        *map(str, extra),
    ]
    return run_script(args, **kwargs)


# The finished tiny run several files resume, damage or refuse: 4 steps, checkpoints at steps 2 and 4.
FINISHED_RUN_ARGS = ["--max_steps", 4, "--save_steps", 2, "--eval_steps", 100, "--save_total_limit", 5]


@pytest.fixture(scope="session")
def finished_run(tiny_teacher_dir, small_corpus, tmp_path_factory):
    """A finished 4-step run (`FINISHED_RUN_ARGS`), made once for the test run; tests copy it (`copy_run`) before
    changing anything."""

    def make(path):
        distill(tiny_teacher_dir, small_corpus / "train", path / "run", *FINISHED_RUN_ARGS)

    return made_once(tmp_path_factory, "finished", make) / "run"


def copy_run(finished_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    return out
