"""The page's live mode with the browser's own audio processing off (what the page asks for) and on (the browser's
defaults), measured with a real model (issue 35: one earlier pass said CER 0.16 with it on, 0.06 off).

    python benchmarks/page_microphone.py MODEL_DIR [--test SPLIT] [--sentences 12] [--pause 1.0]

Starts `distilxlsr-serve MODEL_DIR` on a free loopback port and Debian's Chromium (headless, selenium) whose fake
microphone plays `--sentences` clips of the test split with `--pause` seconds of silence between them. For each
condition the page is opened, "Gravar" clicked, the file played once, "Parar" clicked; scored are the words the page
showed live (the stream's finals) and the page's transcript of its own recording (the .txt it offers after stop,
the recording as the browser processed it). "on" replaces the page's constraints by the browser defaults
(echoCancellation, noiseSuppression, autoGainControl true) before the page loads (a script injected through the
DevTools protocol; the page itself is unchanged); the settings the track reports are recorded, so a browser that
ignores them is seen. CER/WER after the project's text normalisation (`TextNormalizer`), the CPU named.
"""

import argparse
import json
import os
import shutil
import tempfile
import time

import numpy as np
import soundfile as sf
from harness import cpu_line, run_record
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from serve_load import free_port, start_server

from modeling_distilxlsr.audio.decode import load_audio
from modeling_distilxlsr.audio.sources import SkipCounter, find_utterances
from modeling_distilxlsr.corpus.synthesis import default_corpus_dir, ensure_corpus
from modeling_distilxlsr.corpus.teacher import shipped_teacher_dir
from modeling_distilxlsr.models.audio_format import SAMPLING_RATE
from modeling_distilxlsr.text.error_rates import error_rates
from modeling_distilxlsr.text.normalizer import TextNormalizer

PROCESSING = ("echoCancellation", "noiseSuppression", "autoGainControl")


def keeping_track_settings(constraints: str) -> str:
    """A script run before the page's own: getUserMedia called with `constraints` (a JavaScript expression; the name
    `constraints` is the page's own request) and the track's settings kept in `window.__trackSettings`."""
    return f"""
const original = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
navigator.mediaDevices.getUserMedia = async (constraints) => {{
  const stream = await original({constraints});
  window.__trackSettings = stream.getAudioTracks()[0].getSettings();
  return stream;
}};
"""


CONDITIONS = {  # label: the script injected before the page loads
    "off (the page's constraints)": keeping_track_settings("constraints"),
    "on (browser defaults)": keeping_track_settings(json.dumps({"audio": dict.fromkeys(PROCESSING, True)})),
}


def microphone_file(split: str, sentences: int, pause: float, path: str) -> tuple[str, float]:
    """The first `sentences` usable clips of `split` (`find_utterances`: unreadable or untranscribed ones are counted
    and said) with `pause` s of silence between them (and 1 s before, 2 s after) written as 16-bit PCM at 16 kHz;
    (the reference text, seconds)."""
    skips = SkipCounter()
    utterances = find_utterances(split, skips, need_text=True)[:sentences]
    if skips.reasons:
        print(f"{split}: {skips.summary()}")
    gap = np.zeros(int(pause * SAMPLING_RATE), np.float32)
    parts = [np.zeros(SAMPLING_RATE, np.float32)]
    for utterance in utterances:
        parts += [load_audio(utterance.source), gap]
    parts.append(np.zeros(2 * SAMPLING_RATE, np.float32))
    audio = np.concatenate(parts)
    sf.write(path, audio / max(1e-9, float(np.abs(audio).max())) * 0.7, SAMPLING_RATE, subtype="PCM_16")
    return " ".join(utterance.text for utterance in utterances), len(audio) / SAMPLING_RATE


def chromium(microphone: str):
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--use-fake-ui-for-media-stream",
                 "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={microphone}",
                 "--autoplay-policy=no-user-gesture-required"):  # fmt: skip
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))


def live_session(url: str, microphone: str, seconds: float, script: str) -> dict:
    """One recording through the page: its live words, its transcript of the recording, the track's settings."""
    driver = chromium(microphone)
    try:
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": script})
        driver.get(url + "/")
        driver.find_element(By.ID, "record").click()
        WebDriverWait(driver, 30).until(lambda d: "gravando" in d.find_element(By.ID, "status").text)
        time.sleep(seconds)  # the fake microphone loops its file: stop after one play
        live = driver.execute_script(  # each word's own text node, not its time (and not .text: visible text only)
            "return Array.from(document.querySelectorAll('#words .word')).map((w) => w.firstChild.textContent)"
            ".join(' ')"
        )
        settings = driver.execute_script("return window.__trackSettings || null")
        driver.find_element(By.ID, "stop").click()
        WebDriverWait(driver, 300).until(lambda d: d.find_elements(By.ID, "download-txt"))
        txt_url = driver.find_element(By.ID, "download-txt").get_attribute("href")
        recorded = driver.execute_async_script(
            "const done = arguments[1]; fetch(arguments[0]).then((r) => r.text()).then(done);", txt_url
        )
        return {"live": live, "recording": recorded, "track_settings": settings}
    finally:
        driver.quit()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", help="A trained CTC folder (default: the shipped pt-BR teacher).")
    parser.add_argument("--test", help="Test split folder (default: the synthetic corpus' test split).")
    parser.add_argument("--sentences", type=int, default=12)
    parser.add_argument("--pause", type=float, default=1.0)
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--json", help="Write the transcripts and scores here.")
    args = parser.parse_args()
    args.max_batch = 8
    if args.test is None:
        args.test = os.path.join(ensure_corpus(default_corpus_dir()), "test")
    model = args.model or shipped_teacher_dir()
    normalizer = TextNormalizer()
    port = free_port()
    server = start_server(model, port, args)
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            microphone = os.path.join(tmp, "microphone.wav")
            reference, seconds = microphone_file(args.test, args.sentences, args.pause, microphone)
            for condition, script in CONDITIONS.items():
                started = time.perf_counter()
                session = live_session(f"http://127.0.0.1:{port}", microphone, seconds, script)
                row = {"condition": condition, "wall_s": time.perf_counter() - started, **session}
                for what in ("live", "recording"):
                    rates = error_rates([normalizer(reference)], [normalizer(session[what]) or ""])
                    row[f"{what}_cer"], row[f"{what}_wer"] = rates["cer"], rates["wer"]
                rows.append(row)
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(cpu_line(f"{args.sentences} sentences, {args.pause:g} s pauses, {seconds:.1f} s of microphone audio") + "\n")
    print("| browser audio processing | track reports (echo, noise, gain) | live CER | live WER | recording CER |")
    print("|---|---|---|---|---|")
    for row in rows:
        reported = row["track_settings"] or {}
        flags = ", ".join(str(reported.get(name, "?")).lower() for name in PROCESSING)
        print(f"| {row['condition']} | {flags} | {row['live_cer']:.3f} | {row['live_wer']:.3f} | "
              f"{row['recording_cer']:.3f} |")  # fmt: skip
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"run": run_record(), "model": model, "reference": reference, "rows": rows}, f, indent=1,
                      ensure_ascii=False)  # fmt: skip


if __name__ == "__main__":
    main()
