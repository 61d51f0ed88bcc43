import csv
import json

import numpy as np
import pytest
import soundfile as sf
from conftest import write_parquet_stream

from modeling_distilxlsr.audio.dataset import AudioCollator, AudioDataset, LengthGroupedSampler
from modeling_distilxlsr.audio.decode import load_audio, normalize
from modeling_distilxlsr.audio.sources import ManifestError, SkipCounter, find_utterances


def write_wav(path, seconds, sample_rate=16000, channels=1, seed=0):
    rng = np.random.default_rng(seed)
    audio = (rng.standard_normal((int(seconds * sample_rate), channels)) * 0.1).astype("float32")
    sf.write(path, audio if channels > 1 else audio[:, 0], sample_rate)
    return path


def test_audio_folder_recursive_with_lengths_from_headers(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    write_wav(tmp_path / "one.wav", 1.0)
    write_wav(tmp_path / "a" / "two.flac", 0.5)
    write_wav(tmp_path / "a" / "b" / "three.ogg", 0.25, sample_rate=8000, channels=2)
    (tmp_path / "notes.txt").write_text("not audio")
    skips = SkipCounter()
    utterances = find_utterances(str(tmp_path), skips)
    assert sorted(u.num_samples for u in utterances) == [4000, 8000, 16000]
    assert skips.summary() == "skipped 0 of 3 files"
    for u in utterances:  # the header length is the decoded length at 16 kHz
        assert abs(len(load_audio(u.source)) - u.num_samples) <= 1


def test_audiofolder_metadata_csv_gives_transcripts(tmp_path):
    write_wav(tmp_path / "x.wav", 0.5)
    write_wav(tmp_path / "y.wav", 0.5)
    (tmp_path / "metadata.csv").write_text("file_name,transcription\nx.wav,olá mundo\ny.wav,\n", encoding="utf-8")
    skips = SkipCounter()
    utterances = find_utterances(str(tmp_path), skips, need_text=True)
    assert [u.text for u in utterances] == ["olá mundo"]
    assert skips.summary() == "skipped 1 of 2 files: 1 no transcript"


def test_manifests_csv_tsv_jsonl_with_relative_paths(tmp_path):
    (tmp_path / "audio").mkdir()
    for name in ("p.wav", "q.wav"):
        write_wav(tmp_path / "audio" / name, 0.3)
    (tmp_path / "m.csv").write_text("path,text\naudio/p.wav,um\naudio/q.wav,dois\n")
    (tmp_path / "m.jsonl").write_text(json.dumps({"audio": "audio/p.wav", "sentence": "três"}) + "\n")
    for manifest, texts in (("m.csv", ["um", "dois"]), ("m.jsonl", ["três"])):
        utterances = find_utterances(str(tmp_path / manifest), SkipCounter())
        assert [u.text for u in utterances] == texts


def test_common_voice_tsv_layout_resolves_clips_folder(tmp_path):
    (tmp_path / "clips").mkdir()
    write_wav(tmp_path / "clips" / "common_voice_pt_1.mp3.wav", 0.4)
    with open(tmp_path / "validated.tsv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, quotechar=None, escapechar="\\")
        writer.writerow(["client_id", "path", "sentence", "up_votes"])
        writer.writerow(["abc", "common_voice_pt_1.mp3.wav", 'Ele disse "sim".', "2"])
    (utterance,) = find_utterances(str(tmp_path / "validated.tsv"), SkipCounter())
    assert utterance.text == 'Ele disse "sim".' and utterance.speaker == "abc"
    assert utterance.source == str(tmp_path / "clips" / "common_voice_pt_1.mp3.wav")


def test_hugging_face_dataset_from_disk(tmp_path):
    import datasets

    paths = [str(write_wav(tmp_path / f"{i}.wav", 0.5, seed=i)) for i in range(3)]
    dataset = datasets.Dataset.from_dict({"audio": paths, "text": ["a", "b", "c"]})
    dataset = dataset.cast_column("audio", datasets.Audio(decode=False))
    dataset.save_to_disk(str(tmp_path / "hf"))
    utterances = find_utterances(str(tmp_path / "hf"), SkipCounter())
    assert [u.text for u in utterances] == ["a", "b", "c"]
    assert all(len(load_audio(u.source)) == 8000 for u in utterances)


def test_non_utf8_manifest_names_file_and_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes("path,text\na.wav,ok\nb.wav,a\xe7\xe3o\n".encode("latin-1"))
    with pytest.raises(ManifestError, match=r"bad.csv, line 3: not valid UTF-8"):
        find_utterances(str(path), SkipCounter())


def test_manifest_without_path_column_is_a_clear_error(tmp_path):
    (tmp_path / "m.csv").write_text("filename,text\na.wav,x\n")
    with pytest.raises(ManifestError, match="no audio path column"):
        find_utterances(str(tmp_path / "m.csv"), SkipCounter())


def test_decode_nan_stereo_and_resampling(tmp_path):
    write_wav(tmp_path / "s.wav", 1.0, sample_rate=44100, channels=2)
    audio = load_audio(str(tmp_path / "s.wav"))
    assert audio.ndim == 1 and len(audio) == 16000 and audio.dtype == np.float32
    bad = np.zeros(16000, dtype="float32")
    bad[100] = np.nan
    sf.write(tmp_path / "nan.wav", bad, 16000, subtype="FLOAT")
    dataset = AudioDataset(find_utterances(str(tmp_path), SkipCounter()))
    items = [dataset[i] for i in range(len(dataset))]
    assert {"skip": "NaN/Inf samples", "name": str(tmp_path / "nan.wav")} in items


def test_normalize_matches_the_feature_extractor_and_crops(tmp_path):
    from transformers import Wav2Vec2FeatureExtractor

    write_wav(tmp_path / "long.wav", 2.0)
    audio = load_audio(str(tmp_path / "long.wav")) * 3 + 0.5
    expected = Wav2Vec2FeatureExtractor(do_normalize=True)(audio, sampling_rate=16000).input_values[0]
    np.testing.assert_allclose(normalize(audio), expected, atol=1e-6)
    dataset = AudioDataset(find_utterances(str(tmp_path), SkipCounter()), max_samples=5000)
    item = dataset[0]
    assert len(item["input_values"]) == 5000 and abs(float(np.mean(item["input_values"]))) < 1e-5


def test_length_grouped_batches_have_little_padding_and_the_same_order_on_every_rank():
    rng = np.random.default_rng(0)
    lengths = rng.integers(8000, 250000, size=400).tolist()
    keys = list(LengthGroupedSampler(lengths, batch_size=8, seed=1))
    assert {epoch for _, epoch in keys} == {0}  # (index, epoch): the epoch seeds each example's corruptions
    order = [index for index, _ in keys]
    assert sorted(order) == list(range(400))
    assert keys == list(LengthGroupedSampler(lengths, batch_size=8, seed=1))  # what each DDP rank computes
    sampler = LengthGroupedSampler(lengths, batch_size=8, seed=1)
    sampler.set_epoch(1)
    assert [index for index, _ in sampler] != order

    def padding(indices):
        batches = [indices[i : i + 8] for i in range(0, len(indices), 8)]
        return sum(max(lengths[j] for j in b) * len(b) - sum(lengths[j] for j in b) for b in batches)

    assert padding(order) < 0.2 * padding(rng.permutation(400).tolist())


def test_collator_pads_with_attention_mask_and_passes_on_skips():
    collator = AudioCollator()
    batch = collator(
        [
            {"input_values": np.ones(5, "float32")},
            {"skip": "unreadable", "name": "x.wav"},
            {"input_values": np.ones(3, "float32")},
        ]
    )
    assert batch["input_values"].shape == (2, 5) and batch["attention_mask"].tolist() == [[1] * 5, [1, 1, 1, 0, 0]]
    assert batch["skipped"] == [("unreadable", "x.wav")]
    assert "input_values" not in collator([{"skip": "unreadable", "name": "x.wav"}])


def test_decoding_failures_are_counted_once_per_file_across_epochs():
    skips = SkipCounter(total=10)
    skips.skip("too short", "a.wav")
    for _epoch in range(3):
        skips.skip("unreadable", "b.wav", once=True)
        skips.skip("NaN/Inf samples", "c.wav", once=True)
    skips.merge_ranks()  # a single process: nothing to add
    assert skips.summary() == "skipped 3 of 10 files: 1 NaN/Inf samples, 1 too short, 1 unreadable"


@pytest.fixture
def parquet_stream(tmp_path, monkeypatch):
    """36 short clips in 4 parquet shards, the 10th corrupt."""
    import datasets

    # datasets sleeps 5 s whenever a multi-file stream is closed (an Arrow thread-shutdown workaround); these tests
    # close several streams and test nothing of that.
    monkeypatch.setattr(datasets.config, "SLEEP_TIME_ON_THREADS_SHUTDOWN", 0)
    clips = []
    for i in range(36):
        write_wav(tmp_path / "clip.wav", 0.1 + 0.02 * (i % 7), seed=i)
        clips.append((f"clip_{i:02d}.wav", (tmp_path / "clip.wav").read_bytes()))
    clips[9] = ("corrupt.wav", b"RIFF garbage" * 8)
    return write_parquet_stream(tmp_path / "stream", clips)


def _stream_batches(spec, rank, world_size, num_batches, num_workers=2, resume_after=0, held_out=4):
    import itertools

    from modeling_distilxlsr.audio.dataset import make_loader
    from modeling_distilxlsr.audio.streaming import StreamingAudioDataset, open_audio_stream

    stream, held, audio_column, text_column = open_audio_stream(spec, rank, world_size, 0, 8, held_out, SkipCounter())
    dataset = StreamingAudioDataset(stream, audio_column, text_column, 3, 4000, 400, sort_buffer=6)
    dataset.resume_after(resume_after)
    loader = make_loader(dataset, 3, AudioCollator(), num_workers=min(num_workers, stream.num_shards))
    batches = list(itertools.islice(iter(loader), num_batches))
    return held, batches


def _fingerprints(batch):
    """Per item: its length and first sample (no clip is longer than the 4000-sample crop)."""
    pairs = zip(batch["input_values"], batch["attention_mask"], strict=True)
    return [(int(mask.sum()), round(float(values[0]), 5)) for values, mask in pairs]


def test_streaming_splits_ranks_holds_out_the_first_examples_and_reports_bad_rows(parquet_stream):
    held, rank0 = _stream_batches(parquet_stream, 0, 2, 6, num_workers=0)
    _, rank1 = _stream_batches(parquet_stream, 1, 2, 6, num_workers=0)
    assert len(held) == 4 and all(isinstance(u.source, bytes) for u in held)
    # each rank reads its own two shards (14 or 18 rows), never one of the held-out rows
    seen = [{fp for b in batches[:4] for fp in _fingerprints(b)} for batches in (rank0, rank1)]
    assert seen[0] and seen[1] and not seen[0] & seen[1]
    held_out = {(u.num_samples, round(float(normalize(load_audio(u.source))[0]), 5)) for u in held}
    assert not held_out & (seen[0] | seen[1])
    skipped = [name for batches in (rank0, rank1) for b in batches for _, name in b["skipped"]]
    assert "corrupt.wav" in skipped
    for batch in rank0 + rank1:
        lengths = batch["attention_mask"].sum(-1)
        assert (lengths >= 1600).all() and (lengths <= 3520).all()


def test_streaming_resume_continues_with_the_batches_not_yet_seen(parquet_stream):
    # 32 rows: a pass ends after about 11 batches of 3; resume past that
    _, straight = _stream_batches(parquet_stream, 0, 1, 17, num_workers=0)
    assert len({fp for b in straight[:11] for fp in _fingerprints(b)}) == 31  # a full first pass (one row is corrupt)
    _, resumed = _stream_batches(parquet_stream, 0, 1, 6, resume_after=11, num_workers=0)
    assert [_fingerprints(b) for b in resumed] == [_fingerprints(b) for b in straight[11:17]]
    # With 2 workers (each its own shards and passes) the same batches come back, in turns of the two workers
    _, straight = _stream_batches(parquet_stream, 0, 1, 17, num_workers=2)
    _, resumed = _stream_batches(parquet_stream, 0, 1, 6, resume_after=11, num_workers=2)
    for k in range(0, 6, 2):
        pair = sorted(map(_fingerprints, resumed[k : k + 2]))
        assert pair == sorted(map(_fingerprints, straight[11 + k : 13 + k]))


def test_streaming_an_empty_or_unreadable_source_is_a_clear_error(tmp_path):
    from modeling_distilxlsr.audio.streaming import open_audio_stream

    with pytest.raises(ManifestError, match="cannot open"):
        open_audio_stream(str(tmp_path / "nothing-here"), 0, 1, 0, 8, 4, SkipCounter())
    write_wav(tmp_path / "one.wav", 0.5)
    with pytest.raises(ManifestError, match="drop --streaming"):  # an audio folder is listed, not streamed
        open_audio_stream(str(tmp_path), 0, 1, 0, 8, 4, SkipCounter())


def test_stand_in_batch_runs_forward_and_backward_for_both_loops(tiny_ctc_dir):
    """The batch a step uses when all its clips failed to decode, built one way for distillation and CTC: one silent
    clip the models run on with finite outputs, so that every DDP rank still calls backward."""
    import torch
    from transformers import Wav2Vec2Processor

    from modeling_distilxlsr import DistilXLSRForCTC
    from modeling_distilxlsr.audio.dataset import AudioCollator
    from modeling_distilxlsr.training.ctc_data import CTCCollator

    model_dir, _ = tiny_ctc_dir
    # finetune_ctc.py's default SpecAugment: time masks of 10 frames must fit in the stand-in clip.
    model = DistilXLSRForCTC.from_pretrained(model_dir, mask_time_prob=0.05).train()
    audio = AudioCollator().stand_in()
    assert audio["input_values"].shape == (1, 16000) and audio["attention_mask"].all() and audio["skipped"] == []
    ctc = CTCCollator(Wav2Vec2Processor.from_pretrained(model_dir)).stand_in()
    assert ctc["labels"].shape == (1, 1) and ctc["texts"] == ["a"]
    loss = model(ctc["input_values"], attention_mask=ctc["attention_mask"], labels=ctc["labels"]).loss
    (loss * 0.0).backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
