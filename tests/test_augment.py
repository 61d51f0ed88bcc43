"""On-the-fly augmentation: each transform does what it says, reproducibly, without moving frames."""

import numpy as np
import pytest
import soundfile as sf

from modeling_distilxlsr.audio.augment import (
    AugmentArguments,
    Augmenter,
    fit_length,
    reverberate,
    rms,
    simulated_rirs,
    speed_perturb,
    telephone,
    validate_augment_settings,
)
from modeling_distilxlsr.audio.dataset import AudioCollator, AudioDataset
from modeling_distilxlsr.audio.sources import SkipCounter, Utterance

SR = 16_000


def speechlike(seconds=1.0, seed=0):
    """Noise bursts with a syllable-rate envelope: broadband, with a clear time structure."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    envelope = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 2
    return (rng.standard_normal(len(t)) * envelope * 0.3).astype(np.float32)


def settings(**overrides) -> dict:
    values = AugmentArguments(augment=True).augment_settings()
    values.update(overrides)
    return values


@pytest.fixture
def corpus_files(tmp_path):
    paths = []
    for i in range(4):
        path = tmp_path / f"utt{i}.wav"
        sf.write(path, speechlike(1.0 + 0.2 * i, seed=i), SR)
        paths.append(Utterance(str(path), int((1.0 + 0.2 * i) * SR), name=str(path)))
    return paths


@pytest.fixture
def noise_dir(tmp_path):
    folder = tmp_path / "noise" / "sub"  # recursive, any sample rate
    folder.mkdir(parents=True)
    sf.write(folder / "short_8k.flac", np.random.default_rng(5).standard_normal(2000).astype("float32") * 0.2, 8000)
    (folder / "empty.wav").write_bytes(b"")
    return tmp_path / "noise"


@pytest.mark.parametrize("kind", ["file", "color", "babble", "hum"])
@pytest.mark.parametrize("snr_db", [0.0, 10.0])
def test_noise_is_added_at_the_requested_snr(kind, snr_db, noise_dir, corpus_files):
    augmenter = Augmenter(settings(noise_dir=str(noise_dir)), 0, SkipCounter(), babble_sources=corpus_files)
    clean = speechlike(1.5, seed=9)
    noisy = augmenter.add_noise(clean, kind, snr_db, np.random.default_rng(1))
    measured = 20 * np.log10(rms(clean) / rms(noisy - clean))
    assert abs(measured - snr_db) < 0.5 and len(noisy) == len(clean)


def test_noise_files_are_listed_recursively_bad_ones_counted_short_ones_looped(noise_dir):
    skips = SkipCounter()
    augmenter = Augmenter(settings(noise_dir=str(noise_dir)), 0, skips)
    assert [p.split("/")[-1] for p in augmenter.noise_files] == ["short_8k.flac"]
    assert skips.summary() == "skipped 1 of 2 files: 1 noise empty (0 bytes)"
    noise = augmenter.noise_signal("file", 3 * SR, np.random.default_rng(0))  # 0.25 s of noise, looped to 3 s
    assert len(noise) == 3 * SR and np.allclose(noise[:4000], noise[4000:8000])
    long = np.arange(100.0)
    crops = {fit_length(long, 10, np.random.default_rng(s))[0] for s in range(20)}
    assert len(crops) > 3  # a longer noise is cropped at random


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(noise_dir="/no/such/folder"), "no such folder"),
        (dict(snr_range=[20.0, 0.0]), "low then high"),
        (dict(noise_prob=1.5), "probability in [0, 1]"),
        (dict(reverb_prob=-0.1), "probability in [0, 1]"),
        (dict(telephone_codecs=["amr"]), "unknown ['amr']"),
        (dict(noise_kinds=["file"]), "needs --noise_dir"),
        (dict(bandlimit_cutoff_range=[3000.0, 9000.0]), "between 0 and 8000 Hz"),
        (dict(bandlimit_prob=2.0), "probability in [0, 1]"),
    ],
)
def test_bad_settings_are_clear_errors(overrides, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        validate_augment_settings(settings(**overrides))


def test_an_empty_noise_dir_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no usable noise audio"):
        Augmenter(settings(noise_dir=str(tmp_path)), 0, SkipCounter())


def test_telephone_channel_removes_everything_above_4_khz():
    wideband = np.random.default_rng(0).standard_normal(SR).astype(np.float32) * 0.1
    for codec in ("mulaw", "alaw", "gsm", "opus", "mp3"):
        narrow = telephone(wideband, codec)
        spectrum = np.abs(np.fft.rfft(narrow)) ** 2
        freqs = np.fft.rfftfreq(len(narrow), 1 / SR)
        high, low = spectrum[freqs > 4200].sum(), spectrum[(freqs > 300) & (freqs < 3400)].sum()
        assert len(narrow) == SR and high < 1e-3 * low, codec
        assert np.corrcoef(narrow, wideband)[0, 1] < 0.999  # the codec changed the audio


def test_the_bandlimit_channel_removes_what_lies_above_its_cutoff_and_keeps_the_timing():
    only_bandlimit = dict(noise_prob=0.0, reverb_prob=0.0, speed_prob=0.0, telephone_prob=0.0, clip_prob=0.0)
    augmenter = Augmenter(
        settings(**only_bandlimit, bandlimit_prob=1.0, bandlimit_cutoff_range=[3000.0, 3000.0]), 0, SkipCounter()
    )
    wideband = np.random.default_rng(0).standard_normal(SR).astype(np.float32) * 0.1
    teacher_hears, student_hears = augmenter(wideband, np.random.default_rng(1))
    np.testing.assert_array_equal(teacher_hears, wideband)  # robust distillation: the teacher hears it clean
    spectrum = np.abs(np.fft.rfft(student_hears)) ** 2
    freqs = np.fft.rfftfreq(SR, 1 / SR)
    assert len(student_hears) == SR
    assert spectrum[freqs > 6000].mean() < 0.02 * spectrum[freqs < 2000].mean()  # 24-48 dB/octave: > 17 dB down
    assert np.corrcoef(student_hears[: SR // 2], wideband[: SR // 2])[0, 1] > 0.5  # the same clip, not shifted
    off = Augmenter(settings(**only_bandlimit), 0, SkipCounter())  # the default: off
    np.testing.assert_array_equal(off(wideband, np.random.default_rng(1))[1], wideband)


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_changes_length_by_the_factor(factor):
    audio = speechlike(2.0)
    assert abs(len(speed_perturb(audio, factor)) - len(audio) / factor) <= 1


def test_reverb_keeps_the_timing_of_the_clip():
    clean = speechlike(2.0, seed=3)
    for rir in simulated_rirs(4, (0.3, 0.9), seed=0):
        wet = reverberate(clean, rir)
        assert len(wet) == len(clean)
        lags = np.correlate(wet, clean, mode="full")[len(clean) - 200 : len(clean) + 200]
        # the direct path lines up with the clean clip, to the sample (pyroomacoustics' fractional-delay filters can
        # put the peak one sample off); a frame is 320 samples
        assert abs(int(np.argmax(lags)) - 200) <= 1


def test_same_seed_gives_the_same_corrupted_batch_and_teacher_student_frames_align(corpus_files):
    augmenter = Augmenter(settings(speed_prob=1.0, reverb_prob=1.0, noise_prob=1.0), 0, SkipCounter(), corpus_files)

    def batch(seed, epoch):
        dataset = AudioDataset(corpus_files, augmenter=augmenter, seed=seed, paired=True)
        return AudioCollator()([dataset[(i, epoch)] for i in range(len(dataset))])

    first, again, other_epoch = batch(0, 0), batch(0, 0), batch(0, 1)
    assert np.array_equal(first["student_input_values"], again["student_input_values"])
    assert not np.array_equal(first["student_input_values"], other_epoch["student_input_values"])
    # teacher hears the clean clip, the student the corrupted one: same length (speed applied to both), same timing
    assert first["input_values"].shape == first["student_input_values"].shape
    assert not np.allclose(first["input_values"], first["student_input_values"])
    lengths = first["attention_mask"].sum(-1).tolist()
    assert lengths != [u.num_samples for u in corpus_files]  # speed perturbation changed them
    for row, length in enumerate(lengths):
        teacher, student = (first[k][row, :length].numpy() for k in ("input_values", "student_input_values"))
        lags = np.correlate(student, teacher, mode="full")[length - 400 : length + 400]
        assert abs(int(np.argmax(lags)) - 400) <= 1


def test_fine_tuning_mode_replaces_the_clip_and_augment_target_both_corrupts_the_teacher_too(corpus_files):
    augmenter = Augmenter(settings(speed_prob=0.0, noise_prob=1.0), 0, SkipCounter(), corpus_files)
    plain = AudioDataset(corpus_files, seed=0)[(0, 0)]
    replaced = AudioDataset(corpus_files, augmenter=augmenter, seed=0)[(0, 0)]
    assert "student_input_values" not in replaced and not np.allclose(plain["input_values"], replaced["input_values"])
    both = Augmenter(settings(speed_prob=0.0, noise_prob=1.0, augment_target="both"), 0, SkipCounter(), corpus_files)
    item = AudioDataset(corpus_files, augmenter=both, seed=0, paired=True)[(0, 0)]
    assert np.allclose(item["input_values"], item["student_input_values"])
