"""Audio headers read once and cached per file (path, size, modification time); stale and corrupt caches."""

import os

import numpy as np
import soundfile as sf

from modeling_distilxlsr.audio.header_cache import header_samples


def _write(path, seconds, rate=16000):
    sf.write(path, np.zeros(int(seconds * rate), dtype=np.float32), rate)


def test_hits_misses_stale_entries_and_a_corrupt_cache(tmp_path, caplog, monkeypatch):
    cache = str(tmp_path / "headers.sqlite")
    a, b, broken = tmp_path / "a.wav", tmp_path / "b.wav", tmp_path / "broken.wav"
    _write(a, 1.0)
    _write(b, 0.5, rate=8000)
    broken.write_bytes(b"RIFF....WAVE")
    paths = [str(a), str(b), str(broken), str(tmp_path / "gone.wav")]
    first = header_samples(paths, cache)
    assert first[str(a)] == (16000, None) and first[str(b)] == (8000, None)  # 16 kHz samples, whatever the rate
    assert first[str(broken)][0] == 0 and first[str(broken)][1]
    assert str(tmp_path / "gone.wav") not in first  # a missing file is the caller's to report

    # A hit: a.wav rewritten with another length but the same size and modification time is not read again.
    stat = os.stat(a)
    data, _ = sf.read(a)
    sf.write(a, data, 32000)  # same size: only the header's sample rate changes
    os.utime(a, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert os.stat(a).st_size == stat.st_size
    assert header_samples([str(a)], cache)[str(a)] == (16000, None)
    # ... unless asked to read every header again, which also replaces the entry
    monkeypatch.setenv("DISTILXLSR_REREAD_HEADERS", "1")
    assert header_samples([str(a)], cache)[str(a)] == (8000, None)
    monkeypatch.delenv("DISTILXLSR_REREAD_HEADERS")
    assert header_samples([str(a)], cache)[str(a)] == (8000, None)

    # Stale: a new modification time -> read again.
    os.utime(a, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert header_samples([str(a)], cache)[str(a)] == (8000, None)

    # Corrupt: rebuilt with a warning, the results still right.
    with open(cache, "wb") as f:
        f.write(b"this is not an sqlite database" * 10)
    with caplog.at_level("WARNING"):
        again = header_samples(paths, cache)
    assert "rebuilding" in caplog.text and again[str(b)] == (8000, None)
    assert header_samples([str(b)], cache)[str(b)] == (8000, None)


def test_many_files_are_read_by_a_process_pool_with_the_same_results(tmp_path, monkeypatch):
    from modeling_distilxlsr.audio import header_cache

    paths = []
    for i in range(12):
        path = tmp_path / f"{i}.wav"
        _write(path, 0.1 * (i + 1))
        paths.append(str(path))
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    paths.append(str(tmp_path / "bad.wav"))
    sequential = header_cache.read_headers(paths, processes=1)
    monkeypatch.setattr(header_cache, "PARALLEL_MIN_FILES", 2)
    monkeypatch.setattr(header_cache, "CHUNK_FILES", 5)  # three chunks over two processes
    assert header_cache.read_headers(paths, processes=2) == sequential
    assert sequential[0] == (1600, None) and sequential[-1][0] == 0 and sequential[-1][1]
