"""Audio headers read once: lengths of many files, read in parallel and cached across runs and scripts.

Listing a folder of a million clips means a million `soundfile.info` calls; a restart, the next epoch's script or
`transcribe.py` on the same archive should not pay them again. Each result is kept in an SQLite file in the cache
folder (`$DISTILXLSR_CACHE/audio_headers.sqlite`) under the file's absolute path with its size and modification
time: a file that changed is read again, and a cache that cannot be read is rebuilt with a warning. A file rewritten
in place with the same size and modification time (a tool that restores mtimes, a clock set back) keeps its old
entry: `DISTILXLSR_REREAD_HEADERS=1` reads every header again and replaces the entries (or delete the file). (datasets'
own cache fingerprints whole datasets, not files on disk, so it does not serve here; SQLite is in the standard
library and takes concurrent readers and writers, e.g. several DDP ranks.)
"""

import io
import logging
import os
import sqlite3
from concurrent.futures import ProcessPoolExecutor

import soundfile as sf

from ..cache import cache_dir
from ..models.audio_format import SAMPLING_RATE
from .decode import AudioDecodeError, ffmpeg_decode

logger = logging.getLogger(__name__)
CACHE_FILE = "audio_headers.sqlite"
# Header reads are mostly Python (soundfile builds an object per file) and hold the GIL: threads made a listing of
# 100k files 2.8x *slower* than a plain loop here, processes 2x faster (benchmarks/header_listing.py). Below a few
# thousand files a process pool costs more than it saves.
PARALLEL_MIN_FILES = 4096
REREAD_ENV = "DISTILXLSR_REREAD_HEADERS"
CHUNK_FILES = 2048


def cache_path() -> str:

    return os.path.join(cache_dir(), CACHE_FILE)


def read_header(source) -> tuple[int, str | None]:
    """(samples at 16 kHz, None), or (0, why the header cannot be read). A format libsndfile does not read (m4a,
    webm...) has its length from decoding it once with ffmpeg (cached like any header)."""
    try:
        info = sf.info(io.BytesIO(source) if isinstance(source, bytes) else source)
    except Exception as err:  # libsndfile raises several types for corrupt files
        try:
            return len(ffmpeg_decode(source)), None
        except AudioDecodeError as ffmpeg_error:
            return 0, f"{err}; {ffmpeg_error.detail}"
    if info.frames <= 0:
        return 0, "no audio frames"
    return int(info.frames * SAMPLING_RATE / info.samplerate), None


def _open(path: str) -> sqlite3.Connection:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    db = sqlite3.connect(path, timeout=60)
    db.execute(
        "CREATE TABLE IF NOT EXISTS headers (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, "
        "samples INTEGER, error TEXT)"
    )
    return db


def _connect(path: str) -> sqlite3.Connection | None:
    """The cache, rebuilt (with a warning) if it is corrupt; None where it cannot be written at all."""
    try:
        db = _open(path)
        db.execute("SELECT count(*) FROM headers").fetchone()
        return db
    except sqlite3.DatabaseError as err:
        logger.warning("The audio header cache %s cannot be read (%s): rebuilding it.", path, err)
        try:
            os.remove(path)
            return _open(path)
        except (OSError, sqlite3.Error):
            return None
    except OSError:
        return None


def _read_headers(paths: list[str]) -> list[tuple[int, str | None]]:
    return [read_header(path) for path in paths]


def read_headers(paths: list[str], processes: int | None = None) -> list[tuple[int, str | None]]:
    """`read_header` of every path, in chunks over a process pool when there are many."""
    processes = processes or os.cpu_count() or 1
    if len(paths) < PARALLEL_MIN_FILES or processes < 2:
        return _read_headers(paths)
    chunks = [paths[i : i + CHUNK_FILES] for i in range(0, len(paths), CHUNK_FILES)]
    with ProcessPoolExecutor(max_workers=min(processes, len(chunks))) as pool:
        return [header for chunk in pool.map(_read_headers, chunks) for header in chunk]


def header_samples(paths: list[str], cache: str | None = None, processes: int | None = None) -> dict:
    """{path: (samples at 16 kHz, error or None)} for existing files, from the cache where size and modification
    time still match, else read (in parallel when there are many) and added to it."""
    stats = {}
    for path in paths:
        try:
            stat = os.stat(path)
            stats[path] = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
        except OSError:
            continue
    db = _connect(cache or cache_path())
    results, todo = {}, []
    reread, cached = os.environ.get(REREAD_ENV) == "1", {}
    if db is not None and not reread:
        keys = [key for key, _, _ in stats.values()]
        for start in range(0, len(keys), 900):  # SQLite's limit on query parameters
            chunk = keys[start : start + 900]
            query = (
                f"SELECT path, size, mtime_ns, samples, error FROM headers WHERE path IN ({','.join('?' * len(chunk))})"
            )
            cached.update({row[0]: row[1:] for row in db.execute(query, chunk)})
    for path, (key, size, mtime) in stats.items():
        hit = cached.get(key)
        if hit and hit[0] == size and hit[1] == mtime:
            results[path] = (hit[2], hit[3])
        else:
            todo.append(path)
    if todo:
        results.update(zip(todo, read_headers(todo, processes), strict=True))
        if db is not None:
            rows = [(*stats[p], *results[p]) for p in todo]
            try:
                with db:
                    db.executemany("INSERT OR REPLACE INTO headers VALUES (?, ?, ?, ?, ?)", rows)
            except sqlite3.Error as err:  # a read-only or full disk: the results stand, only the cache is lost
                logger.warning("Could not update the audio header cache: %s", err)
    if db is not None:
        db.close()
    return results
