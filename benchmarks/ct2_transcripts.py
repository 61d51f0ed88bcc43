"""Our CTC student on CTranslate2 (faster-whisper's engine), judged by its transcripts: the same test files through
torch and through CTranslate2 int8 / float32 (issue 35: "its own transcript on a corpus test file").

    python benchmarks/ct2_transcripts.py MODEL_DIR [--test SPLIT] [--files 100] [--json OUT.json]

MODEL_DIR is a DistilXLSR CTC folder of XLSR-53's layout (`distilxlsr-ct2` says what else it lacks; a student of the
small shipped teacher gets that layout with `train_distill.py --student_pos_conv 128 16`). It is converted by
`export_ctranslate2` (CTranslate2's own converter), each file is run as CTranslate2's documentation runs a
`Wav2Vec2` (one normalised wave shaped 1 x 1 x samples, `encode`), and the logits go through the same greedy
`CTCDecoder` as torch's (`load_backend(MODEL_DIR, "torch-fp32")`). Reported: CER/WER of each engine against the
references, and the CER of CTranslate2's transcripts against torch's (0 = the same text). Plain CTC text (no
formatting), the project's normalisation; the CPU named.
"""

import argparse
import json
import os
import tempfile

import ctranslate2
import numpy as np
from harness import cpu_line, run_record
from transformers import Wav2Vec2CTCTokenizer

from modeling_distilxlsr.audio.decode import load_audio, normalize
from modeling_distilxlsr.audio.sources import SkipCounter, find_utterances
from modeling_distilxlsr.corpus.synthesis import default_corpus_dir, ensure_corpus
from modeling_distilxlsr.export.ctranslate2_export import export_ctranslate2
from modeling_distilxlsr.inference.backends import load_backend
from modeling_distilxlsr.inference.decoding import CTCDecoder
from modeling_distilxlsr.text.error_rates import error_rates
from modeling_distilxlsr.text.normalizer import TextNormalizer


def ctranslate2_texts(folder: str, waves: list[np.ndarray]) -> list[str]:
    model = ctranslate2.models.Wav2Vec2(folder, device="cpu")
    decoder = CTCDecoder(Wav2Vec2CTCTokenizer.from_pretrained(folder))
    texts = []
    for wave in waves:
        batch = ctranslate2.StorageView.from_array(np.ascontiguousarray(normalize(wave)[None, None], np.float32))
        texts.append(decoder(np.asarray(model.encode(batch, to_cpu=True))[0])["text"])
    return texts


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="A DistilXLSR CTC folder of XLSR-53's layout.")
    parser.add_argument("--test", help="Test split folder (default: the synthetic corpus' test split).")
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--json", help="Write the scores and transcripts here.")
    args = parser.parse_args()
    test = args.test or os.path.join(ensure_corpus(default_corpus_dir()), "test")
    skips = SkipCounter()
    rows = find_utterances(test, skips, need_text=True)[: args.files]  # unreadable or untranscribed: counted, said
    if skips.reasons:
        print(f"{test}: {skips.summary()}")
    waves = [load_audio(row.source) for row in rows]
    normalizer = TextNormalizer()
    references = [normalizer(row.text) for row in rows]

    torch_backend = load_backend(args.model, "torch-fp32")
    torch_decoder = CTCDecoder(torch_backend.tokenizer, frame_seconds=torch_backend.frame_seconds)
    transcripts = {"torch fp32": [torch_decoder(torch_backend.logits([wave])[0])["text"] for wave in waves]}
    with tempfile.TemporaryDirectory() as root:
        for quantization in ("int8", "float32"):
            folder = export_ctranslate2(args.model, os.path.join(root, quantization), quantization)
            transcripts[f"CTranslate2 {ctranslate2.__version__} {quantization}"] = ctranslate2_texts(folder, waves)

    normalised = {engine: [normalizer(t) or "" for t in texts] for engine, texts in transcripts.items()}
    table = []
    for engine, texts in normalised.items():
        rates = error_rates(references, texts)
        to_torch = error_rates(normalised["torch fp32"], texts)["cer"]
        same = sum(a == b for a, b in zip(texts, normalised["torch fp32"], strict=True))
        table.append({"engine": engine, "cer": rates["cer"], "wer": rates["wer"], "cer_to_torch": to_torch,
                      "same_text_as_torch": same})  # fmt: skip
    print(cpu_line(f"{len(rows)} files of {test}; greedy CTC, plain text") + "\n")
    print("| engine | CER | WER | CER against torch's transcripts | files with torch's exact text |")
    print("|---|---|---|---|---|")
    for row in table:
        print(f"| {row['engine']} | {row['cer']:.3f} | {row['wer']:.3f} | {row['cer_to_torch']:.4f} | "
              f"{row['same_text_as_torch']} of {len(rows)} |")  # fmt: skip
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"run": run_record(), "model": args.model, "test": test, "rows": table,
                       "transcripts": transcripts}, f, indent=1, ensure_ascii=False)  # fmt: skip


if __name__ == "__main__":
    main()
