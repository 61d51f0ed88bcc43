import os
import subprocess
import sys
import textwrap

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


@pytest.fixture(scope="session")
def tiny_teacher_dir(tmp_path_factory):
    """A saved tiny wav2vec2 teacher folder, as `--teacher` takes it."""
    from transformers import Wav2Vec2Model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("teacher")
    Wav2Vec2Model(tiny_teacher_config()).save_pretrained(path)
    return str(path)


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


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory):
    """A small corpus from the real corpus maker: 60 sentences, each spoken once (about 2 s of synthesis)."""
    from modeling_distilxlsr.corpus.synthesis import make_corpus

    path = tmp_path_factory.mktemp("corpus") / "pt-br"
    make_corpus(
        str(path), seed=0, quiet=True, num_sentences=60, dev_sentences=8, test_sentences=8, utterances_per_sentence=1
    )
    return path


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


def run_script(args: list[str], timeout=600, env_extra=None, check=True) -> subprocess.CompletedProcess:
    """Runs one of the repo's scripts (or `accelerate launch`) as a user would, from the repo root."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", **(env_extra or {}))
    result = subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout[-5000:]}\n{result.stderr[-8000:]}"
        )
    return result


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
