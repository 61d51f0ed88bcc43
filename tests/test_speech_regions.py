"""Speech regions first: silence is found (Silero VAD, loaded from its safetensors weights without importing the
package), never decoded, and cut exactly where the clip alone is cut; a run of blank frames ends a word as `|` does;
each region is one OpenAI-style segment with Whisper's fields."""

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from conftest import REPO_ROOT, speech

from modeling_distilxlsr.audio.vad import RegionRules, regions_from_probabilities, speech_regions
from modeling_distilxlsr.inference.backends import load_backend
from modeling_distilxlsr.inference.decoding import CTCDecoder, split_words_at_pauses
from modeling_distilxlsr.inference.transcription import transcribe

RATE = 16_000


def _silence(seconds):
    return np.zeros(int(seconds * RATE), np.float32)


def test_a_padded_clip_is_cut_at_exactly_the_samples_the_clip_alone_is_cut_at():
    clip = speech(3.0, 1)
    alone = speech_regions(clip)
    padded = speech_regions(np.concatenate([_silence(1.0), clip, _silence(2.0)]))
    assert len(alone) == len(padded) == 1
    assert (padded[0].start - RATE, padded[0].end - RATE) == (alone[0].start, alone[0].end)
    assert padded[0].speech_prob > 0.8


def test_silence_and_noise_hold_no_speech_and_a_long_pause_splits_two_utterances():
    rng = np.random.default_rng(0)
    assert speech_regions(_silence(3.0)) == []
    assert speech_regions((rng.standard_normal(3 * RATE) * 0.01).astype(np.float32)) == []
    assert speech_regions(np.zeros(0, np.float32)) == []
    first, second = speech(1.5, 0), speech(1.5, 3)
    apart = speech_regions(np.concatenate([first, _silence(1.0), second]))
    assert len(apart) == 2 and apart[0].end <= len(first) and apart[1].start >= len(first) + RATE
    close = speech_regions(np.concatenate([first, _silence(0.2), second]))
    assert len(close) == 1  # a breath is not the end of a stretch of speech (min_silence_s 0.5)


def test_the_region_rules_bridge_short_gaps_drop_clicks_and_keep_neighbours_apart():
    windows = np.array([0.9] * 10 + [0.1] * 5 + [0.9] * 10 + [0.1] * 40 + [0.9] * 2 + [0.1] * 40 + [0.9] * 10)
    regions = regions_from_probabilities(windows, len(windows) * 512, RegionRules(search_s=0.1))
    assert len(regions) == 2  # 5 quiet windows (0.16 s) bridged; the 2-window click (64 ms) dropped
    assert regions[0].start == 0 and regions[1].end == len(windows) * 512
    assert regions[0].end <= regions[1].start


def test_loading_the_vad_neither_imports_silero_vad_nor_changes_torch_threads():
    code = (
        "import sys, torch, numpy as np\n"
        "torch.set_num_threads(2)\n"
        "from modeling_distilxlsr.audio.vad import speech_regions\n"
        "speech_regions(np.zeros(16000, np.float32))\n"
        "print(torch.get_num_threads(), 'silero_vad' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    assert out.stdout.split() == ["2", "False"]  # `import silero_vad` alone would set 1 thread


class _Tokenizer:
    """The two ids the pause split needs, as a CTC tokenizer gives them."""

    pad_token_id, word_delimiter_token = 0, "|"

    def get_vocab(self):
        return {"<pad>": 0, "|": 1, "a": 2, "b": 3}


def _logits(labels):
    logits = np.full((len(labels), 4), -5.0, np.float32)
    logits[np.arange(len(labels)), labels] = 5.0
    return logits


def test_a_run_of_blank_frames_ends_a_word_as_the_delimiter_does():
    long_pause = _logits([2] + [0] * 20 + [3])  # "a", 0.4 s of blanks, "b": today's decode gives "ab"
    split = split_words_at_pauses(long_pause, 0, 1, 15)
    assert split.argmax(-1).tolist() == [2] + [0] * 9 + [1] + [0] * 10 + [3]
    assert sorted(split[10]) == sorted(long_pause[10])  # the frame's scores swapped, still one distribution
    short_pause = _logits([2] + [0] * 10 + [3])
    assert split_words_at_pauses(short_pause, 0, 1, 15) is short_pause
    already = _logits([2] + [0] * 10 + [1] + [0] * 10 + [3])
    assert split_words_at_pauses(already, 0, 1, 15) is already
    assert CTCDecoder(_Tokenizer()).pause_frames == 15  # 0.3 s of 20 ms frames


@pytest.fixture(scope="module")
def backend(tiny_ctc_dir):
    model_dir, _ = tiny_ctc_dir
    return load_backend(str(model_dir), "torch-fp32")


def _transcribe(backend, paths, vad=True):
    decoder = CTCDecoder(backend.tokenizer, timestamps="word", frame_seconds=backend.frame_seconds)
    return {path: (result, error) for path, result, error in transcribe(backend, paths, decoder, vad=vad)}


def test_silence_around_a_clip_changes_nothing_and_a_file_of_silence_is_an_empty_transcript(backend, tmp_path):
    clip = speech(2.5, 2)
    paths = {name: str(tmp_path / f"{name}.wav") for name in ("clip", "padded", "silence")}
    sf.write(paths["clip"], clip, RATE)
    sf.write(paths["padded"], np.concatenate([_silence(1.0), clip, _silence(2.0)]), RATE)
    sf.write(paths["silence"], _silence(2.0), RATE)
    results = _transcribe(backend, list(paths.values()))
    (alone, _), (padded, _), (silence, error) = (results[p] for p in paths.values())
    assert padded["text"] == alone["text"] and alone["text"]
    shifted = [(c["text"], round(c["timestamp"][0] - 1.0, 2)) for c in padded["chunks"]]
    assert shifted == [(c["text"], c["timestamp"][0]) for c in alone["chunks"]]
    assert error is None and silence == {"text": "", "segments": [], "chunks": []}
    whole = _transcribe(backend, [paths["padded"]], vad=False)[paths["padded"]][0]
    assert whole["segments"][0]["start"] == 0.0  # --no_vad: the file is one region


def test_no_word_and_no_segment_runs_across_a_pause_and_segments_carry_whispers_fields(backend, tmp_path):
    path = str(tmp_path / "two.wav")
    first, second = speech(2.0, 0), speech(2.0, 4)
    sf.write(path, np.concatenate([first, _silence(1.0), second]), RATE)
    result, error = _transcribe(backend, [path])[path]
    assert error is None and len(result["segments"]) == 2
    pause = (len(first) / RATE, len(first) / RATE + 1.0)
    assert not [c for c in result["chunks"] if c["timestamp"][0] < pause[0] and c["timestamp"][1] > pause[1]]
    for segment in result["segments"]:
        assert not (segment["start"] < pause[0] and segment["end"] > pause[1])
        assert segment["avg_logprob"] <= 0 and 0 <= segment["no_speech_prob"] < 0.5
        assert segment["compression_ratio"] > 0 and segment["temperature"] == 0.0 and segment["tokens"]
    assert result["text"] == " ".join(s["text"] for s in result["segments"])
