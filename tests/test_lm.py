"""n-gram LMs for CTC decoding: built with KenLM from text, shipped in the ASR folder, used by the real transformers
pipeline in a fresh process, by transcribe.py on both backends, and tuned on a dev set."""

import gzip
import json
import os
import sys

import pytest
import soundfile as sf
import torch
from conftest import REPO_ROOT, run_fresh_python, run_script, tiny_student_config

from modeling_distilxlsr.inference.decoding import LanguageModelError
from modeling_distilxlsr.lm.build import attach_lm, build_lm
from modeling_distilxlsr.text.normalizer import TextNormalizer

LM_TEXT = ["o gato preto dorme", "o gato preto come", "a gata preta dorme", "um gato branco come", "o cão late"]


@pytest.fixture(scope="module")
def misspelling_asr(tmp_path_factory):
    """A tiny DistilXLSR CTC model that hears one clip as "o gatu preto" (60% of its training labels) or "o gato
    preto" (40%), so greedy decoding misspells the word (the "o" is never the most likely label of its frames) and
    only a language model can put it right; the clip in a one-utterance eval folder whose transcript is the right
    spelling."""
    from modeling_distilxlsr import DistilXLSRForCTC
    from modeling_distilxlsr.models.audio_format import default_feature_extractor
    from modeling_distilxlsr.models.folder import save_for_hub
    from modeling_distilxlsr.text.normalizer import build_processor, build_vocab

    root = tmp_path_factory.mktemp("lm")
    torch.manual_seed(0)
    processor = build_processor(build_vocab(keep_apostrophe=False), default_feature_extractor())
    no_dropout = dict(final_dropout=0.0, hidden_dropout=0.0, attention_dropout=0.0, feat_proj_dropout=0.0)
    config = tiny_student_config(vocab_size=len(processor.tokenizer), pad_token_id=0, mask_time_prob=0.0, **no_dropout)
    model = DistilXLSRForCTC(config)
    wave = torch.randn(1, 32000, generator=torch.Generator().manual_seed(0))
    wave = (wave - wave.mean()) / wave.std()
    labels = {t: torch.tensor([processor.tokenizer(t).input_ids]) for t in ("o gatu preto", "o gato preto")}
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(400):
        model(wave, labels=labels["o gatu preto" if step % 5 < 3 else "o gato preto"]).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    save_for_hub(model, str(root / "asr"), processor)
    (root / "dev").mkdir()
    sf.write(root / "dev" / "clip.wav", wave[0].numpy() / 5, 16000)
    (root / "dev" / "metadata.csv").write_text("file_name,transcription\nclip.wav,O gato preto.\n", encoding="utf-8")
    (root / "lm.txt").write_text("\n".join(LM_TEXT) + "\n", encoding="utf-8")
    build_lm([str(root / "lm.txt")], str(root / "lm"), order=3)
    return root


def transcribe(folder, clip, *flags):
    """The clip is the noise the misspelling model was trained on: decoded whole (--no_vad), as the pipeline does;
    the VAD rightly finds no speech in it. The model's own words (--raw_text), as the pipeline and the LM write them."""
    command = [sys.executable, "transcribe.py", str(folder), str(clip), "--format", "jsonl", "--backend", "torch"]
    result = run_script([*command, "--no_vad", "--raw_text", *flags])
    return json.loads(result.stdout.splitlines()[0])["text"], result.stderr


def test_build_reads_every_format_normalises_and_reports(tmp_path):
    (tmp_path / "a.txt").write_text("O Gato-Preto dorme 😀\n\n3 gatos!\n", encoding="utf-8")
    with gzip.open(tmp_path / "b.txt.gz", "wt", encoding="utf-8") as f:
        f.write("Olá, mundo.\n")
    (tmp_path / "c.csv").write_text('sentence,other\n"A casa, azul",1\n', encoding="utf-8")
    (tmp_path / "d.jsonl").write_text('{"text": "uma frase", "n": 1}\n', encoding="utf-8")
    (tmp_path / "e.tsv").write_text("id\tnota\n1\tR$ 3,50 hoje\n2\t3.5 pontos\n", encoding="utf-8")
    sources = [str(tmp_path / n) for n in ("a.txt", "b.txt.gz", "c.csv", "d.jsonl")]
    info = build_lm(sources, str(tmp_path / "lm"), order=3)
    tsv = build_lm([str(tmp_path / "e.tsv")], str(tmp_path / "lm_tsv"), order=2, text_column="nota")
    corpus = (tmp_path / "lm" / "unigrams.txt").read_text(encoding="utf-8").split()
    assert {"gato", "preto", "três", "gatos", "olá", "casa", "uma", "frase"} <= set(corpus)
    assert info["sentences"] == 5 and info["skipped"] == {"empty lines": 1}
    assert "'😀' x1" in info["normalizer_report"]
    assert info["vocabulary"] == len(corpus) and info["words"] == 13
    header = (tmp_path / "lm" / "lm.arpa").read_text(encoding="utf-8").split("\\1-grams:")[0]
    assert sorted(info["ngram_counts"]) == [1, 2, 3] and f"ngram 3={info['ngram_counts'][3]}" in header
    assert info["ngram_counts"][1] == info["vocabulary"] + 3  # the words, <s>, </s> and <unk>
    # The same normaliser as the labels: money spelt out; an ambiguous number drops its sentence, counted.
    words = set((tmp_path / "lm_tsv" / "unigrams.txt").read_text(encoding="utf-8").split())
    assert tsv["sentences"] == 1 and words == {"três", "reais", "e", "cinquenta", "centavos", "hoje"}
    assert tsv["skipped"] == {"dropped: ambiguous number 3.5": 1}


@pytest.mark.slow
def test_empty_text_and_a_missing_column_are_clear_errors(tmp_path):
    (tmp_path / "empty.txt").write_text("\n  \n😀\n", encoding="utf-8")
    with pytest.raises(LanguageModelError, match="No text left"):
        build_lm([str(tmp_path / "empty.txt")], str(tmp_path / "lm"))
    (tmp_path / "x.csv").write_text("path,duration\na.wav,1\n", encoding="utf-8")
    result = run_script(
        [sys.executable, "-m", "modeling_distilxlsr.lm", "build", str(tmp_path / "x.csv"), "--out", str(tmp_path)],
        check=False,
    )
    assert result.returncode != 0 and "no text column" in result.stderr and "Traceback" not in result.stderr
    (tmp_path / "latin1.txt").write_bytes("o gato\na gota d'água\n".encode("latin-1"))
    result = run_script(
        [sys.executable, "-m", "modeling_distilxlsr.lm", "build", str(tmp_path / "latin1.txt"), "--out", str(tmp_path)],
        check=False,
    )
    assert result.returncode != 0 and "latin1.txt, line 2: not valid UTF-8" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_lm_spelling_characters_the_tokenizer_lacks_is_refused(misspelling_asr, tmp_path):
    (tmp_path / "t.txt").write_text("a gota d'água caiu\n", encoding="utf-8")
    build_lm([str(tmp_path / "t.txt")], str(tmp_path / "lm"), order=2, normalizer=TextNormalizer(keep_apostrophe=True))
    with pytest.raises(LanguageModelError, match=r"\[\"'\"\]"):
        attach_lm(str(misspelling_asr / "asr"), str(tmp_path / "lm"))
    assert not (misspelling_asr / "asr" / "language_model").exists()


def test_corrupt_lm_is_a_clear_error_at_load(misspelling_asr, tmp_path):
    import shutil

    shutil.copytree(misspelling_asr / "lm", tmp_path / "lm")
    (tmp_path / "lm" / "lm.arpa").write_text("\\data\\\nngram 1=2\n\n\\1-grams:\n-1.0\n", encoding="utf-8")
    with pytest.raises(LanguageModelError, match="is not a valid KenLM model"):
        attach_lm(str(misspelling_asr / "asr"), str(tmp_path / "lm"))
    (tmp_path / "bad.bin").write_bytes(b"mmap lm http://kheafield.com/code format version 5\x00garbage")
    clip = misspelling_asr / "dev" / "clip.wav"
    result = run_script(
        [sys.executable, "transcribe.py", str(misspelling_asr / "asr"), str(clip), "--lm", str(tmp_path / "bad.bin")],
        check=False,
    )
    assert result.returncode != 0 and "is not a valid KenLM model" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_shipped_lm_fixes_a_misspelling_in_the_real_pipeline_and_transcribe(misspelling_asr, tmp_path):
    import shutil

    asr = tmp_path / "asr"
    shutil.copytree(misspelling_asr / "asr", asr)
    clip = misspelling_asr / "dev" / "clip.wav"
    greedy = transcribe(asr, clip)[0]  # the model's own spelling ("o gatu preto", or "o gat preto" on some CPUs)
    assert greedy.startswith("o gat") and greedy != "o gato preto"
    attach_lm(str(asr), str(misspelling_asr / "lm"))
    assert {"alphabet.json", "language_model", "lm_info.json"} <= set(os.listdir(asr))
    # A fresh process that cannot import this package: a Hub user's pipeline() and AutoProcessor, beam search + LM.
    out = run_fresh_python(
        f"""
        import json, soundfile
        from transformers import AutoProcessor, pipeline
        asr = pipeline("automatic-speech-recognition", model={str(asr)!r}, trust_remote_code=True)
        audio, rate = soundfile.read({str(clip)!r})
        result = asr({{"raw": audio, "sampling_rate": rate}})
        processor = AutoProcessor.from_pretrained({str(asr)!r}, trust_remote_code=True)
        print(json.dumps([asr.type, result["text"], type(processor).__name__]))
        """,
        tmp_path,
    )
    result_line = next(line for line in out.splitlines() if line.startswith('["'))  # KenLM prints progress too
    assert json.loads(result_line) == ["ctc_with_lm", "o gato preto", "Wav2Vec2ProcessorWithLM"]
    text, stderr = transcribe(asr, clip)
    assert text == "o gato preto" and "beam search with an n-gram LM" in stderr
    assert transcribe(asr, clip, "--no_lm")[0] == greedy
    # Hotwords pass through to pyctcdecode: a heavily weighted hotword wins over the LM's spelling.
    assert transcribe(asr, clip, "--hotwords", greedy.split()[1], "--hotword_weight", "50")[0] == greedy
    # ONNX backend: the exported folder carries the LM, and beam search runs on ONNX Runtime's logits.
    run_script([sys.executable, "-m", "modeling_distilxlsr.export.onnx_export", str(asr), str(tmp_path / "onnx")])
    assert transcribe(tmp_path / "onnx", clip, "--backend", "onnx")[0] == "o gato preto"
    assert transcribe(tmp_path / "onnx", clip, "--backend", "onnx", "--no_lm")[0] == greedy


def test_tune_stores_the_best_weights_and_reports_greedy_vs_lm(misspelling_asr, tmp_path):
    import shutil

    from modeling_distilxlsr.lm.tune import tune_lm

    asr = tmp_path / "asr"
    shutil.copytree(misspelling_asr / "asr", asr)
    attach_lm(str(asr), str(misspelling_asr / "lm"), alpha=0.0, beta=0.0)
    report = tune_lm(str(asr), [str(misspelling_asr / "dev")], beam_width=16, alphas=[0.0, 1.0], betas=[0.0, 1.0])
    dev = report["eval"]["dev"]
    assert dev["greedy"]["wer"] == pytest.approx(1 / 3) and dev["lm"]["wer"] == 0.0
    assert report["alpha"] == 1.0 and len(report["grid"]) == 4
    attrs = json.loads((asr / "language_model" / "attrs.json").read_text())
    assert (attrs["alpha"], attrs["beta"]) == (report["alpha"], report["beta"])
    assert json.loads((asr / "lm_results.json").read_text())["eval"]["dev"]["lm"]["wer"] == 0.0
    card = (asr / "README.md").read_text(encoding="utf-8")
    assert card.count("## Decoding with the n-gram language model") == 1 and "| dev | 0.333 | 0.000 |" in card
    tune_lm(str(asr), [str(misspelling_asr / "dev")], beam_width=16, alphas=[1.0], betas=[0.0])
    assert (asr / "README.md").read_text(encoding="utf-8").count("## Decoding with the n-gram language model") == 1


def test_missing_pyctcdecode_says_how_to_install(misspelling_asr, tmp_path):
    """Simulates a machine without pyctcdecode (a package that fails to import shadows it)."""
    hidden = tmp_path / "hidden" / "pyctcdecode"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError(\"No module named 'pyctcdecode'\")\n")
    asr = tmp_path / "asr"
    import shutil

    shutil.copytree(misspelling_asr / "asr", asr)
    attach_lm(str(asr), str(misspelling_asr / "lm"))
    result = run_script(
        [sys.executable, "transcribe.py", str(asr), str(misspelling_asr / "dev" / "clip.wav")],
        env_extra={"PYTHONPATH": f"{tmp_path / 'hidden'}{os.pathsep}{REPO_ROOT}"},
        check=False,
    )
    assert result.returncode != 0 and "requirements-lm.txt" in result.stderr and "--no_lm" in result.stderr


@pytest.mark.parametrize(
    "name, damage, reason",
    [
        ("cut.txt.gz", lambda data: data[:20], "line 1: not a readable gzip file (EOFError"),
        ("plain.txt.gz", lambda data: b"o gato bebe leite\n", "line 1: not a readable gzip file (BadGzipFile"),
        ("corrupt.txt.gz", lambda data: data[:30] + bytes(50) + data[80:], "not a readable gzip file (error: Error -3"),
    ],
)
def test_lm_build_on_a_damaged_gz_names_the_file_and_line(tmp_path, name, damage, reason):
    path = tmp_path / name
    path.write_bytes(damage(gzip.compress(b"o gato bebe leite\n" * 2000)))
    result = run_script(
        [sys.executable, "-m", "modeling_distilxlsr.lm", "build", str(path), "--out", str(tmp_path / "lm")],
        check=False,
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert f"error: {path}, " in result.stderr and reason in result.stderr


def test_a_folder_lm_damaged_after_attach_is_a_clear_error_at_load(misspelling_asr, tmp_path):
    import shutil

    from modeling_distilxlsr.inference.decoding import load_lm_decoder

    folder = tmp_path / "asr"
    shutil.copytree(misspelling_asr / "asr", folder)
    attach_lm(str(folder), str(misspelling_asr / "lm"))
    load_lm_decoder(model_dir=str(folder))  # whole: loads
    model = next((folder / "language_model").glob("*.arpa"))
    data = model.read_bytes()
    model.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        LanguageModelError, match=rf"{model.name} has {len(data) // 2} bytes \(attach wrote {len(data)}\)"
    ):
        load_lm_decoder(model_dir=str(folder))
    model.write_bytes(data[:-10] + b"\xff" * 10)
    with pytest.raises(LanguageModelError, match="has the size attach wrote but other contents"):
        load_lm_decoder(model_dir=str(folder))
    clip = misspelling_asr / "dev" / "clip.wav"
    result = run_script([sys.executable, "transcribe.py", str(folder), str(clip), "--backend", "torch"], check=False)
    assert result.returncode != 0 and "the folder's LM is damaged" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_scoring_a_folder_with_a_damaged_lm_names_the_file_before_the_pipeline_loads_it(misspelling_asr, tmp_path):
    """The recipes score their folder through pipeline(), which would load language_model/ unchecked (a random-bytes
    lm.arpa ends in a UnicodeDecodeError inside pyctcdecode): the digests attach recorded are checked first."""
    import shutil

    from modeling_distilxlsr.inference.scoring import score_asr_folder

    asr = tmp_path / "asr"
    shutil.copytree(misspelling_asr / "asr", asr)
    attach_lm(str(asr), str(misspelling_asr / "lm"))
    arpa = asr / "language_model" / "lm.arpa"
    arpa.write_bytes(os.urandom(arpa.stat().st_size))
    with pytest.raises(LanguageModelError, match=r"lm\.arpa has the size attach wrote but other contents"):
        score_asr_folder(str(asr), str(misspelling_asr / "dev"), batch_size=1)


def test_the_lms_n_best_puts_the_right_spelling_first_and_keeps_the_models_own(misspelling_asr, tmp_path):
    """`CTCDecoder.alternatives` (Vosk's `max_alternatives` on the live stream): the beam search's n best, best
    first with a falling score: the LM's "o gato preto" ahead of the model's own spelling; greedy has one path."""
    import shutil

    from modeling_distilxlsr.inference.backends import load_backend
    from modeling_distilxlsr.inference.decoding import CTCDecoder, load_lm_decoder

    folder = tmp_path / "asr"
    shutil.copytree(misspelling_asr / "asr", folder)
    attach_lm(str(folder), str(misspelling_asr / "lm"))
    backend = load_backend(str(folder), "torch-fp32")
    audio, _ = sf.read(misspelling_asr / "dev" / "clip.wav", dtype="float32")
    logits = backend.logits([audio])[0]
    decoder = CTCDecoder(backend.tokenizer, load_lm_decoder(backend.tokenizer, None, str(folder)), timestamps="word")
    best = decoder.alternatives(logits, 3)
    assert 2 <= len(best) <= 3 and best[0]["text"] == "o gato preto" == decoder(logits)["text"]
    assert len({a["text"] for a in best}) == len(best) and any(a["text"].startswith("o gat") for a in best[1:])
    assert [a["confidence"] for a in best] == sorted((a["confidence"] for a in best), reverse=True)
    assert [c["text"] for c in best[0]["chunks"]] == ["o", "gato", "preto"]
    greedy = CTCDecoder(backend.tokenizer, timestamps="word", confidence=True).alternatives(logits, 3)
    assert len(greedy) == 1 and greedy[0]["text"].startswith("o gat") and 0 < greedy[0]["confidence"] <= 1
