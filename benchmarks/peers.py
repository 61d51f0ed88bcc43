"""Speed against what users would pick instead: our students vs faster-whisper's engine (CTranslate2) with whisper
tiny/base/small shapes, on the same CPU in one run.

    pip install -r benchmarks/requirements-peers.txt
    python benchmarks/peers.py [--clips 10 60] [--batch 1 4] [--peers tiny base small] [--repeats 3] [--no_lm]
                               [--isa avx2]

A speed table only: every model has random weights (speed does not depend on them; accuracy of random peers means
nothing and is not reported). Ours: the default, the slim and the log-mel student (the default one with
`feature_frontend="log_mel"`) with the BP vocabulary, on each path `--backend auto` may choose on this machine
(`candidate_backends`: torch fp32, torch bf16 where the CPU runs it natively, ONNX fp32 and dynamic int8, exported by
`distilxlsr-onnx`), greedy CTC decoding included, and on CTranslate2's Wav2Vec2 (`distilxlsr-ct2`, int8 and float32:
rows `ct2-*`, one `encode` of the batch; not the log-mel student, which it has no layer for); and each student's fastest
path with a 4-gram LM (pyctcdecode, beam width 32, an LM of the corpus' train transcripts). The beam search's cost
depends on how peaked the logits are and a random model's are flat (worst case), so the LM rows decode *real* logits of
the same length in place of the random model's: the shipped pt-BR teacher's on corpus test speech (same vocabulary, same
20 ms frames); the forward pass is the student's own. Peers: whisper configs with the public shapes (tiny 384x4+4, base
512x6+6, small 768x12+12, 80 mel bins, 51,865 tokens), random weights built with transformers, converted by
CTranslate2's own converter (int8 and fp32; a byte-level tokenizer saved beside the weights is all it needs offline),
timed as faster-whisper runs them: its log-mel features of each 30 s window, then `ctranslate2.models.Whisper.generate`
(greedy) from the transcribe prompt with end-of-text suppressed, for a fixed number of tokens: **4 tokens per second of
audio** (Brazilian conversational speech runs at about 2.5-3 words a second, and whisper's multilingual BPE spends about
1.4 tokens on a Portuguese word), so a random model cannot stop early and every engine does the work a real transcript
costs. Batched rows: ours, the clips in one padded batch; whisper, the windows of all clips in one `generate` (as
faster-whisper's BatchedInferencePipeline). whisper.cpp (pywhispercpp, f16 and q8_0): the same random weights written as
a ggml file (`whisper_ggml.py`), greedy, no timestamps, no temperature fallback, `max_tokens` the same 4 tokens per
second per 30 s window; it cannot be told to suppress end-of-text, so end-of-text's embedding row is zeroed in the
random weights (its logit is then 0, below the largest of 51,864 random ones); the decoded token count is checked.
pywhispercpp has no batch call: its batched rows are the clips one after another. XLSR-53's own shape (a random-weight
`Wav2Vec2ForCTC`, torch fp32 eager) runs in the same run, for the "vs XLSR-53 fp32" column. Every row names its engine,
version, threads and the CPU."""

import argparse
import csv
import os
import re
import sys
import tempfile
from importlib.metadata import version

import numpy as np
import torch
from harness import ISA_CAPS, cap_isa, cpu_line, median_seconds
from shapes import ctc_student_folder, xlsr53_ctc_folder
from transformers import Wav2Vec2CTCTokenizer
from whisper_ggml import write_ggml

from modeling_distilxlsr import DistilXLSRConfig
from modeling_distilxlsr.audio.decode import load_audio, normalize
from modeling_distilxlsr.corpus.synthesis import default_corpus_dir, ensure_corpus
from modeling_distilxlsr.corpus.teacher import shipped_teacher_dir
from modeling_distilxlsr.export.ctranslate2_export import ctranslate2_problems, export_ctranslate2
from modeling_distilxlsr.export.onnx_export import export_onnx
from modeling_distilxlsr.inference.backends import candidate_backends, load_backend
from modeling_distilxlsr.inference.decoding import CTCDecoder, build_decoder
from modeling_distilxlsr.lm.build import build_lm

TOKENS_PER_SECOND = 4
WINDOW_SECONDS = 30
LM_ORDER, LM_BEAM_WIDTH = 4, 32
WHISPER_SHAPES = {  # the public configs' shapes (openai/whisper-*)
    "tiny": dict(d_model=384, encoder_layers=4, decoder_layers=4, heads=6, ffn=1536),
    "base": dict(d_model=512, encoder_layers=6, decoder_layers=6, heads=8, ffn=2048),
    "small": dict(d_model=768, encoder_layers=12, decoder_layers=12, heads=12, ffn=3072),
}
# <|startoftranscript|> <|pt|> <|transcribe|> <|notimestamps|>, and <|endoftext|> (suppressed)
PROMPT, END_OF_TEXT = [50258, 50267, 50359, 50363], 50257


def need(module: str):
    try:
        return __import__(module)
    except ImportError:
        sys.exit(f"{module} is missing: pip install -r benchmarks/requirements-peers.txt")


STUDENTS = {  # label: (slim, feature_frontend)
    "default": (False, "cnn"),
    "slim": (True, "cnn"),
    "log-mel": (False, "log_mel"),
}


def student_folder(root: str, name: str) -> str:
    """A student of `STUDENTS` (`shapes.ctc_student_folder`) with its ONNX fp32 and int8 graphs beside it."""
    slim, frontend = STUDENTS[name]
    folder = ctc_student_folder(os.path.join(root, name), slim, frontend)
    export_onnx(folder, folder, quantize="dynamic")
    return folder


def student_ct2_folders(root: str, name: str, folder: str) -> dict[str, str]:
    """The student converted for CTranslate2's Wav2Vec2 (`distilxlsr-ct2`), int8 and float32, by quantization; none
    for a layout CTranslate2 cannot run (the log-mel front-end)."""
    if ctranslate2_problems(DistilXLSRConfig.from_pretrained(folder)):
        return {}
    return {q: export_ctranslate2(folder, os.path.join(root, f"{name}-ct2-{q}"), q) for q in ("int8", "float32")}


def whisper_folder(root: str, size: str, quantization: str) -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import GPT2TokenizerFast, WhisperConfig, WhisperForConditionalGeneration

    ctranslate2 = need("ctranslate2")
    shape = WHISPER_SHAPES[size]
    source = os.path.join(root, f"whisper-{size}")
    if not os.path.isdir(source):
        config = WhisperConfig(
            vocab_size=51865, num_mel_bins=80, d_model=shape["d_model"], encoder_layers=shape["encoder_layers"],
            decoder_layers=shape["decoder_layers"], encoder_attention_heads=shape["heads"],
            decoder_attention_heads=shape["heads"], encoder_ffn_dim=shape["ffn"], decoder_ffn_dim=shape["ffn"],
            decoder_start_token_id=PROMPT[0], pad_token_id=END_OF_TEXT, bos_token_id=END_OF_TEXT,
            eos_token_id=END_OF_TEXT,
        )  # fmt: skip
        torch.manual_seed(0)
        model = WhisperForConditionalGeneration(config)
        with torch.no_grad():  # logit 0 for end-of-text: whisper.cpp cannot suppress it (see the module docstring)
            model.model.decoder.embed_tokens.weight[END_OF_TEXT] = 0
        model.save_pretrained(source)
        tokenizer = Tokenizer(models.BPE(vocab=whisper_vocabulary(), merges=[]))
        tokenizer.pre_tokenizer, tokenizer.decoder = (
            pre_tokenizers.ByteLevel(add_prefix_space=False),
            decoders.ByteLevel(),
        )
        GPT2TokenizerFast(tokenizer_object=tokenizer).save_pretrained(source)
    if quantization in ("f16", "q8_0"):  # whisper.cpp
        from transformers import WhisperForConditionalGeneration

        out = os.path.join(root, f"ggml-{size}-{quantization}.bin")
        return write_ggml(WhisperForConditionalGeneration.from_pretrained(source), out, quantization)
    out = os.path.join(root, f"ct2-{size}-{quantization}")
    ctranslate2.converters.TransformersConverter(source).convert(out, quantization=quantization, force=True)
    return out


def whisper_vocabulary() -> dict[str, int]:
    """Byte tokens, fillers up to whisper's special tokens, and those at their multilingual ids (the converter adds
    the timestamp tokens up to the model's 51,865): what CTranslate2 checks a prompt against."""
    from tokenizers import pre_tokenizers

    vocab = {c: i for i, c in enumerate(pre_tokenizers.ByteLevel.alphabet())}
    vocab.update({f"<filler_{i}>": i for i in range(len(vocab), END_OF_TEXT)})
    specials = ["<|endoftext|>", "<|startoftranscript|>"]
    specials += [f"<|lang{i}|>" if i != 8 else "<|pt|>" for i in range(99)]  # <|pt|> is the 9th language
    specials += ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>"]
    specials += ["<|notimestamps|>"]
    vocab.update({token: END_OF_TEXT + i for i, token in enumerate(specials)})
    assert vocab["<|notimestamps|>"] == PROMPT[3] and vocab["<|pt|>"] == PROMPT[1]
    return vocab


def time_ours(folder: str, backend_name: str, clips: list[np.ndarray], repeats: int, lm=None) -> float:
    """Forward pass + decoding of `clips` in one batch. With `lm` = (decoder, real logits): the beam search decodes
    the real logits of each clip's length (the module docstring says why), the forward pass is still run."""
    backend = load_backend(folder, backend_name)
    if lm is None:
        decoder = CTCDecoder(backend.tokenizer, frame_seconds=backend.frame_seconds)
        return median_seconds(lambda: [decoder(logits) for logits in backend.logits(clips)], repeats)
    beam_decoder, speech_logits = lm

    def run():
        for logits in backend.logits(clips):
            beam_decoder(speech_logits[: len(logits)])

    return median_seconds(run, repeats)


def time_ours_on_ctranslate2(folder: str, clips: list[np.ndarray], threads: int, repeats: int) -> float:
    """A student on CTranslate2's Wav2Vec2: the clips (one length) normalised, stacked as (batch, 1, samples), one
    `encode` for their logits, then the same greedy decoding as the other rows of ours."""
    ctranslate2 = need("ctranslate2")
    model = ctranslate2.models.Wav2Vec2(folder, device="cpu", intra_threads=threads)
    decoder = CTCDecoder(Wav2Vec2CTCTokenizer.from_pretrained(folder))

    def run():
        batch = np.stack([normalize(clip) for clip in clips])[:, None].astype(np.float32)
        logits = np.asarray(model.encode(ctranslate2.StorageView.from_array(batch), to_cpu=True))
        return [decoder(row) for row in logits]

    return median_seconds(run, repeats)


def speech_logits_and_lm(root: str, seconds: float):
    """The shipped teacher's logits on `seconds` of corpus test speech (utterances end to end) and a beam-search
    decoder over a 4-gram of the corpus' train transcripts."""

    corpus = ensure_corpus(default_corpus_dir(), quiet=True)
    with open(os.path.join(corpus, "test", "metadata.csv"), encoding="utf-8") as f:
        files = [os.path.join(corpus, "test", row["file_name"]) for row in csv.DictReader(f)]
    speech, needed = [], int(seconds * 16000)
    for path in files:
        speech.append(load_audio(path))
        if sum(map(len, speech)) >= needed:
            break
    if sum(map(len, speech)) < needed:
        sys.exit(f"the corpus test split holds less than {seconds:g} s of speech")
    teacher = load_backend(shipped_teacher_dir(), "torch-fp32")
    logits = teacher.logits([np.concatenate(speech)[:needed]])[0]
    lm_dir = os.path.join(root, "lm")
    build_lm([os.path.join(corpus, "train", "metadata.csv")], lm_dir, order=LM_ORDER)
    with open(os.path.join(lm_dir, "unigrams.txt"), encoding="utf-8") as f:
        unigrams = f.read().split()
    beam = build_decoder(teacher.tokenizer, os.path.join(lm_dir, "lm.arpa"), unigrams)
    decoder = CTCDecoder(teacher.tokenizer, lm=beam, beam_options={"beam_width": LM_BEAM_WIDTH})
    return decoder, logits


def time_whisper(folder: str, clips: list[np.ndarray], threads: int, repeats: int) -> float:
    ctranslate2 = need("ctranslate2")
    from faster_whisper.feature_extractor import FeatureExtractor

    model = ctranslate2.models.Whisper(folder, device="cpu", intra_threads=threads)
    extractor = FeatureExtractor(feature_size=80)
    window = 30 * 16000

    def run():
        windows = [clip[start : start + window] for clip in clips for start in range(0, len(clip), window)]
        features = np.stack([extractor(np.pad(w, (0, window - len(w))))[:, :3000] for w in windows])
        tokens = [max(1, int(TOKENS_PER_SECOND * len(w) / 16000)) for w in windows]
        model.generate(
            ctranslate2.StorageView.from_array(features.astype(np.float32)),
            [PROMPT] * len(windows),
            beam_size=1,
            max_length=len(PROMPT) + max(tokens),
            suppress_tokens=[END_OF_TEXT],
            suppress_blank=False,
        )

    return median_seconds(run, repeats)


def time_whisper_cpp(path: str, clips: list[np.ndarray], threads: int, repeats: int) -> float:
    from pywhispercpp.model import Model

    window_tokens = int(TOKENS_PER_SECOND * min(WINDOW_SECONDS, len(clips[0]) / 16000))
    params = dict(language="pt", no_timestamps=True, max_tokens=window_tokens, temperature_inc=0.0)
    params["suppress_blank"] = False
    model = Model(path, redirect_whispercpp_logs_to=None, n_threads=threads, print_progress=False, **params)

    def run():
        for clip in clips:
            text = "".join(segment.text for segment in model.transcribe(clip))
            windows = -(-len(clip) // (WINDOW_SECONDS * 16000))
            decoded = len(re.findall(r"<\d+>| ", text))  # whisper_ggml's token strings: "<i>", and " "
            if decoded < 0.9 * window_tokens * windows:
                raise SystemExit(f"whisper.cpp decoded {decoded} text tokens, expected {window_tokens * windows}")

    return median_seconds(run, repeats)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=float, nargs="+", default=[10.0, 60.0], help="Clip lengths, seconds.")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--peers", nargs="+", default=["tiny", "base", "small"])
    parser.add_argument("--students", nargs="+", default=list(STUDENTS), choices=list(STUDENTS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--no_lm", action="store_true", help="Leave out the rows with the n-gram LM.")
    parser.add_argument("--isa", choices=sorted(ISA_CAPS), help="Cap the ISA of every engine that can be capped.")
    args = parser.parse_args()
    cap_isa(args.isa)
    ctranslate2 = need("ctranslate2")
    need("faster_whisper")
    need("pywhispercpp")
    import onnxruntime

    torch.set_num_threads(args.threads)
    root = tempfile.mkdtemp(prefix="peers_")
    rng = np.random.default_rng(0)
    engines = []
    # XLSR-53 itself (CTC, random weights), torch fp32 eager: what the "vs XLSR-53" column divides by
    engines.append(("XLSR-53 shapes (CTC)", "torch-fp32", f"torch {torch.__version__}",
                    xlsr53_ctc_folder(os.path.join(root, "xlsr53")), "ours"))  # fmt: skip
    for student in args.students:
        folder = student_folder(root, student)
        for name in candidate_backends(folder):
            engine = (
                f"torch {torch.__version__}" if name.startswith("torch") else f"onnxruntime {onnxruntime.__version__}"
            )
            engines.append((f"DistilXLSR {student} student", name, engine, folder, "ours"))
        for quantization, ct2_folder in student_ct2_folders(root, student, folder).items():
            engine = f"CTranslate2 {ctranslate2.__version__}"
            engines.append((f"DistilXLSR {student} student", f"ct2-{quantization}", engine, ct2_folder, "ours-ct2"))
    for size in args.peers:
        for quantization in ("int8", "float32", "q8_0", "f16"):
            folder = whisper_folder(root, size, quantization)
            engine = (
                f"whisper.cpp (pywhispercpp {version('pywhispercpp')})"
                if quantization in ("q8_0", "f16")
                else f"CTranslate2 {ctranslate2.__version__}"
            )
            engines.append((f"whisper-{size} shapes", quantization, engine, folder, engine.split()[0]))
    rows = []
    # one LM and one stretch of real-speech logits for every clip length: each LM row decodes its clip's first frames
    lm = None if args.no_lm else speech_logits_and_lm(root, max(args.clips))
    for seconds in args.clips:
        for batch in args.batch:
            clips = [(rng.standard_normal(int(seconds * 16000)) * 0.1).astype(np.float32) for _ in range(batch)]
            for model, path, engine, folder, kind in engines:
                repeats = args.repeats if seconds * batch <= 40 else max(1, args.repeats - 2)
                if kind == "ours":
                    wall = time_ours(folder, path, clips, repeats)
                elif kind == "ours-ct2":
                    wall = time_ours_on_ctranslate2(folder, clips, args.threads, repeats)
                elif kind == "whisper.cpp":
                    wall = time_whisper_cpp(folder, clips, args.threads, repeats)
                else:
                    wall = time_whisper(folder, clips, args.threads, repeats)
                rows.append((seconds, batch, model, path, engine, wall, seconds * batch / wall))
                print(f"{seconds:g} s x {batch}: {model} {path}: {wall:.3f} s", file=sys.stderr, flush=True)
            students = dict.fromkeys(r[2] for r in rows if r[2].startswith("DistilXLSR"))
            for model in students if lm is not None else ():  # each student's fastest greedy path, with the LM
                ours = [r for r in rows if r[:3] == (seconds, batch, model) and not r[3].startswith("ct2-")]
                fastest = min(ours, key=lambda r: r[5])
                folder = next(e[3] for e in engines if e[:2] == (model, fastest[3]))
                wall = time_ours(folder, fastest[3], clips, args.repeats if seconds * batch <= 40 else 1, lm)
                path = f"{fastest[3]} + {LM_ORDER}-gram LM"
                rows.append((seconds, batch, model, path, fastest[4], wall, seconds * batch / wall))
                print(f"{seconds:g} s x {batch}: {model} {path}: {wall:.3f} s", file=sys.stderr, flush=True)
    print(
        cpu_line(
            f"whisper decodes {TOKENS_PER_SECOND} tokens per audio second",
            f"LM rows: {LM_ORDER}-gram, beam width {LM_BEAM_WIDTH}",
        )
        + "\n"
    )
    print("| clip | batch | model | path | engine | wall s | RTF | audio-hours per hour | vs whisper-tiny int8 | "
          "vs XLSR-53 fp32 |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")

    def speed_of(seconds, batch, model, path):
        return next((r[6] for r in rows if r[:4] == (seconds, batch, model, path)), None)

    for seconds, batch, model, path, engine, wall, speed in rows:
        ratios = [
            speed_of(seconds, batch, "whisper-tiny shapes", "int8"),
            speed_of(seconds, batch, "XLSR-53 shapes (CTC)", "torch-fp32"),
        ]
        cells = " | ".join(f"{speed / r:.1f}x" if r else "-" for r in ratios)
        print(f"| {seconds:g} s | {batch} | {model} | {path} | {engine} | {wall:.3f} | {wall / (seconds * batch):.4f} "
              f"| {speed:.0f} | {cells} |")  # fmt: skip


if __name__ == "__main__":
    main()
