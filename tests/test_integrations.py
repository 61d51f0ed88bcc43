"""Our folders in the tools BP teams already run (the `integrations` extra): ctc-forced-aligner on the single-input ONNX
export, and CTranslate2's Wav2Vec2 on the CTranslate2 export, each run as its own documentation runs it, against our
own alignment and our torch model. (whisperX cannot be installed beside our torch pin: README, "Integrations".)"""

import json
import sys

import ctranslate2
import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import SPEECH_FIXTURE, distill, run_script, tiny_student_config
from ctc_forced_aligner import generate_emissions, get_alignments, get_spans, postprocess_results, preprocess_text
from transformers import Wav2Vec2ForCTC, Wav2Vec2Processor

from modeling_distilxlsr import DistilXLSRConfig, DistilXLSRForCTC
from modeling_distilxlsr.audio.decode import normalize
from modeling_distilxlsr.corpus.teacher import shipped_teacher_dir
from modeling_distilxlsr.export.ctranslate2_export import (
    CTranslate2Unsupported,
    ctranslate2_problems,
    export_ctranslate2,
)
from modeling_distilxlsr.export.onnx_export import export_onnx
from modeling_distilxlsr.inference.onnx_runtime import onnx_session, run_onnx
from modeling_distilxlsr.models.audio_format import default_feature_extractor
from modeling_distilxlsr.models.folder import save_for_hub
from modeling_distilxlsr.text.normalizer import build_processor, build_vocab

pytestmark = pytest.mark.slow  # exports and third-party runtimes
FIRST_SENTENCE = "Você já almoçou ou prefere esperar um pouco mais?"  # the fixture's first 4.2 s
FIRST_SENTENCE_SECONDS = 4.2


def save_teacher_as_distilxlsr_ctc(path) -> str:
    """The shipped pt-BR teacher (a `Wav2Vec2ForCTC` that transcribes the fixture) re-saved as a DistilXLSR CTC folder:
    our classes with weights that hear speech, so that an alignment has something to agree on."""
    teacher = Wav2Vec2ForCTC.from_pretrained(shipped_teacher_dir()).eval()
    fields = dict(vocab_size=teacher.config.vocab_size, pad_token_id=teacher.config.pad_token_id)
    config = DistilXLSRConfig.from_teacher_config(teacher.config, num_hidden_layers=6, **fields)
    model = DistilXLSRForCTC(config).eval()
    state = {k.replace("wav2vec2.", "distilxlsr.", 1): v for k, v in teacher.state_dict().items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert missing == ["distilxlsr.masked_spec_embed"] and unexpected == []  # used only when masking in training
    save_for_hub(model, str(path), Wav2Vec2Processor.from_pretrained(shipped_teacher_dir()))
    return str(path)


def test_a_single_input_onnx_graph_matches_the_two_input_one_and_runs_a_batch_of_lengths(tiny_ctc_dir, tmp_path):
    model_dir, model = tiny_ctc_dir
    path = export_onnx(str(model_dir), str(tmp_path / "onnx"), attention_mask=False)
    session = onnx_session(path)
    assert [i.name for i in session.get_inputs()] == ["input_values"]
    assert [o.name for o in session.get_outputs()] == ["logits"]
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(n).astype(np.float32) for n in (12000, 7001, 20000)]
    got = run_onnx(session, waves)  # one at a time: the graph cannot mask padding
    for i, wave in enumerate(waves):
        with torch.no_grad():
            expected = model(torch.from_numpy(wave)[None]).logits[0].numpy()
        np.testing.assert_allclose(got[i, : len(expected)], expected, atol=1e-4, rtol=0)
        assert not got[i, len(expected) :].any()


def test_ctc_forced_aligner_on_our_onnx_export_agrees_with_our_alignment(tmp_path):
    """ctc-forced-aligner's documented ONNX flow (generate_emissions -> preprocess_text -> get_alignments ->
    get_spans -> postprocess_results) with our graph and our tokenizer. Its `<star>` wildcard between words keeps
    each word to its own frames, where ours meet mid-gap, so its spans lie inside ours; the starts agree within 0.1 s,
    and each span's middle within 0.05 s (the last word's end runs on to the end of its audio there)."""
    model_dir = save_teacher_as_distilxlsr_ctc(tmp_path / "model")
    export_onnx(model_dir, str(tmp_path / "onnx"), attention_mask=False)
    wave, rate = sf.read(SPEECH_FIXTURE, dtype="float32")
    wave = wave[: int(FIRST_SENTENCE_SECONDS * rate)]
    sf.write(tmp_path / "clip.wav", wave, rate)

    session = onnx_session(str(tmp_path / "onnx" / "model.onnx"))
    tokenizer = Wav2Vec2Processor.from_pretrained(tmp_path / "onnx").tokenizer
    emissions, stride = generate_emissions(session, normalize(wave))  # the tool feeds the wave as given: normalised
    tokens_starred, text_starred = preprocess_text(FIRST_SENTENCE, romanize=False, language="por")
    segments, scores, blank = get_alignments(emissions, tokens_starred, tokenizer)
    theirs = postprocess_results(text_starred, get_spans(tokens_starred, segments, blank), stride, scores)

    aligned = run_script([sys.executable, "align.py", model_dir, tmp_path / "clip.wav", FIRST_SENTENCE])
    ours = json.loads(aligned.stdout)["words"]
    assert [w["text"] for w in theirs] == [w["text"] for w in ours] == FIRST_SENTENCE.split()
    for mine, other in zip(ours, theirs, strict=True):
        assert abs(mine["start"] - other["start"]) <= 0.1, (mine, other)
        assert mine["start"] - 0.02 <= other["start"] < other["end"]
    for mine, other in zip(ours[:-1], theirs[:-1], strict=True):
        assert other["end"] <= mine["end"] + 0.02, (mine, other)
        middle = (mine["start"] + mine["end"]) / 2 - (other["start"] + other["end"]) / 2
        assert abs(middle) <= 0.05, (mine, other)


def ctranslate2_logits(folder: str, wave: np.ndarray, compute_type: str = "default") -> np.ndarray:
    """CTranslate2's Wav2Vec2 as its documentation runs it: a (batch, 1, samples) StorageView through `encode`."""
    model = ctranslate2.models.Wav2Vec2(folder, device="cpu", compute_type=compute_type)
    features = ctranslate2.StorageView.from_array(np.ascontiguousarray(wave[None, None], dtype=np.float32))
    return np.asarray(model.encode(features, to_cpu=True))[0]


def xlsr_layout_ctc_folder(path) -> tuple[str, DistilXLSRForCTC]:
    """A tiny random-weight CTC student with XLSR-53's positional convolution (kernel 128, 16 groups), as every
    student distilled from XLSR-53 has."""
    torch.manual_seed(0)
    processor = build_processor(build_vocab(), default_feature_extractor())
    config = tiny_student_config(
        vocab_size=len(processor.tokenizer),
        pad_token_id=0,
        num_conv_pos_embeddings=128,
        num_conv_pos_embedding_groups=16,
    )
    model = DistilXLSRForCTC(config).eval()
    save_for_hub(model, str(path), processor)
    return str(path), model


def test_ctranslate2_runs_a_student_of_xlsr53_layout_with_torchs_logits(tmp_path):
    model_dir, model = xlsr_layout_ctc_folder(tmp_path / "model")
    wave = normalize(sf.read(SPEECH_FIXTURE, dtype="float32")[0][: 3 * 16000])
    with torch.no_grad():
        expected = model(torch.from_numpy(wave)[None]).logits[0].numpy()

    fp32 = export_ctranslate2(model_dir, str(tmp_path / "ct2"))
    got = ctranslate2_logits(fp32, wave)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    processor = Wav2Vec2Processor.from_pretrained(fp32)  # the folder decodes as any wav2vec2 CTC model's
    assert processor.batch_decode(got.argmax(-1)[None]) == processor.batch_decode(expected.argmax(-1)[None])

    int8 = export_ctranslate2(model_dir, str(tmp_path / "ct2_int8"), quantization="int8")
    quantized = ctranslate2_logits(int8, wave)
    cosine = (quantized * expected).sum(-1) / (np.linalg.norm(quantized, axis=-1) * np.linalg.norm(expected, axis=-1))
    assert cosine.mean() > 0.99


def test_ctranslate2_export_names_what_its_hard_coded_layout_lacks(tiny_ctc_dir, tmp_path):
    """The main job's students inherit the small teacher's positional convolution (the tiny one here: 16 wide, 2
    groups); CTranslate2 would convert them and then fail inside oneDNN at the first encode."""
    model_dir, _ = tiny_ctc_dir
    with pytest.raises(CTranslate2Unsupported, match=r"num_conv_pos_embeddings=16 .*num_conv_pos_embedding_groups=2"):
        export_ctranslate2(str(model_dir), str(tmp_path / "ct2"))
    command = [sys.executable, "-m", "modeling_distilxlsr.export.ctranslate2_export", model_dir, tmp_path / "ct2"]
    result = run_script(command, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: ") and "XLSR-53's layout" in result.stderr


def test_ctranslate2_export_refuses_a_log_mel_student_in_one_line(tmp_path):
    """CTranslate2 has no layer for the log-mel front-end: a clear refusal, not wav2vec2 export's ValueError."""
    torch.manual_seed(0)
    processor = build_processor(build_vocab(), default_feature_extractor())
    config = tiny_student_config(vocab_size=len(processor.tokenizer), pad_token_id=0, feature_frontend="log_mel")
    save_for_hub(DistilXLSRForCTC(config).eval(), str(tmp_path / "model"), processor)
    with pytest.raises(CTranslate2Unsupported, match="a log_mel front-end"):
        export_ctranslate2(str(tmp_path / "model"), str(tmp_path / "ct2"))


def test_a_student_of_a_smaller_teacher_gets_xlsr53s_positional_convolution_and_fits_ctranslate2(
    tiny_teacher_dir, small_corpus, tmp_path
):
    """`--student_pos_conv 128 16`: the tiny teacher's 16-tap, 2-group convolution is not copied but built in
    XLSR-53's shape and learnt; everything else is still copied; the distilled folder fits CTranslate2's layout. A
    group count that does not divide the width is a one-line usage error."""
    out = tmp_path / "out"
    steps = ["--max_steps", 4, "--eval_steps", 4, "--save_steps", 4]
    result = distill(tiny_teacher_dir, small_corpus / "train", out, *steps, "--student_pos_conv", 128, 16)
    assert "positional convolution: 128 taps in 16 groups (the teacher's: 16 in 2): not copied, learnt" in result.stderr
    config = DistilXLSRConfig.from_pretrained(out)
    assert (config.num_conv_pos_embeddings, config.num_conv_pos_embedding_groups) == (128, 16)
    assert not [p for p in ctranslate2_problems(config) if "conv_pos" in p]
    bad = distill(tiny_teacher_dir, small_corpus / "train", tmp_path / "bad", *steps, "--student_pos_conv", 128, 5,
                  check=False)  # fmt: skip
    assert bad.returncode != 0 and "groups must divide the hidden size (32)" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_ct2_transcripts_benchmark_gives_ctranslate2s_text_against_torchs(small_corpus, tmp_path):
    """benchmarks/ct2_transcripts.py on an XLSR-layout student: torch and both CTranslate2 precisions transcribe the
    same files; float32 gives torch's text."""
    model_dir, _ = xlsr_layout_ctc_folder(tmp_path / "model")
    out = tmp_path / "ct2.json"
    command = [sys.executable, "benchmarks/ct2_transcripts.py", model_dir, "--test", str(small_corpus / "test"),
               "--files", "3", "--json", str(out)]  # fmt: skip
    result = run_script(command)
    rows = {row["engine"]: row for row in json.loads(out.read_text())["rows"]}
    assert len(rows) == 3 and rows["torch fp32"]["cer_to_torch"] == 0
    float32 = next(row for engine, row in rows.items() if engine.endswith("float32"))
    assert float32["cer_to_torch"] < 0.02 and "| torch fp32 |" in result.stdout
