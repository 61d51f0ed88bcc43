"""Live transcription over a WebSocket, in Vosk-server's protocol (the one live-captioning clients speak):

    client: {"config": {"sample_rate": 16000}}      (optional; 16000 by default)
    client: binary frames of 16-bit little-endian mono PCM, any size
    server: {"partial": "o gato"}                    while an utterance goes on (one answer per client message)
    server: {"text": "o gato bebe", "result": [{"word", "start", "end", "conf"}]}   at each endpoint
    client: {"eof": 1}  ->  server: the last utterance's result, then closes
    with config.max_alternatives N: each result as {"alternatives": [{"text", "confidence", "result"}]} (n best)

An utterance runs from the first speech to a trailing silence of `endpoint_silence_s` (webrtcvad, the maintained
WebRTC voice-activity detector, on 30 ms frames), or to `max_utterance_s`. Every `partial_every_s` of new audio, a
window goes through the server's dynamic batcher (so live streams share forward passes with uploads) and is decoded
greedily (a CTC model needs no decoder state): chunked CTC with left context. The window is the audio since the
last settled frame plus `left_context_s` before it; its frames from that point on replace the unsettled ones, and
all but the last `right_margin_s` of them settle (those lack right context: the next window recomputes them). So a
partial costs the same at the 1st second of an utterance as at the 20th. At an endpoint the whole utterance goes
through in one pass: the result is the batch transcript of that audio.
Word times are seconds from the start of the stream.
"""

import json

import librosa
import numpy as np
import webrtcvad

from ..models.audio_format import SAMPLING_RATE

VAD_FRAME = 480  # 30 ms at 16 kHz


class StreamProtocolError(ValueError):
    """A client message that is not the protocol's (bad JSON, a bad sample rate): answered with an error, closed."""


class StreamSession:
    """One client's stream: `feed(pcm)` and `finish()` return what to transcribe; `result(...)`/`partial(...)` turn
    the logits into the protocol's messages. Holds no model: the server runs the audio through its batcher."""

    def __init__(self, decoder, endpoint_silence_s: float = 0.6, partial_every_s: float = 0.5,
                 max_utterance_s: float = 20.0, vad_aggressiveness: int = 2, preroll_s: float = 0.3,
                 left_context_s: float = 2.0, right_margin_s: float = 0.3, frame_samples: int = 320):  # fmt: skip
        self.decoder, self.rate = decoder, SAMPLING_RATE
        self.frame_samples = frame_samples  # samples per CTC frame (320: 20 ms at 16 kHz)
        self.left_frames = int(left_context_s * SAMPLING_RATE) // frame_samples
        self.margin_frames = int(right_margin_s * SAMPLING_RATE) // frame_samples
        # The VAD calls a frame speech only once the voice is loud: the soft onset before it (a fricative, a stop's
        # burst) would be cut off. An utterance starts `preroll_s` before its first speech frame (a pre-roll, as
        # voice-activated recorders keep).
        self.preroll_frames = int(preroll_s * SAMPLING_RATE / VAD_FRAME)
        self.recent: list[np.ndarray] = []  # the last non-speech frames before an utterance
        self.endpoint_frames = max(1, int(endpoint_silence_s * SAMPLING_RATE / VAD_FRAME))
        self.partial_samples = int(partial_every_s * SAMPLING_RATE)
        self.max_samples = int(max_utterance_s * SAMPLING_RATE)
        self.vad = webrtcvad.Vad(vad_aggressiveness)
        self.client_rate = SAMPLING_RATE
        self.max_alternatives = 0  # Vosk's n-best: results as {"alternatives": [...]} when above 0
        self.pending = np.zeros(0, np.float32)  # audio not yet through the VAD (less than a frame)
        self.utterance = np.zeros(0, np.float32)  # the current utterance, from its first speech frame
        self.utterance_start = 0.0  # seconds from the stream's start
        self.stream_samples = 0  # samples of the stream seen by the VAD
        self.silent_frames = 0
        self.decoded_at = 0  # utterance length at the last partial
        self.settled = None  # logits of the utterance's first frames, final for partials (chunked CTC)
        self.window_frame = 0  # the frame the pending partial's window starts at

    def configure(self, message: str) -> None:
        try:
            data = json.loads(message)
        except ValueError as err:
            raise StreamProtocolError(f"not JSON: {message[:80]!r}") from err
        if not isinstance(data, dict):
            raise StreamProtocolError(f"expected an object, got {message[:80]!r}")
        config = data.get("config", {})
        rate = config.get("sample_rate", self.client_rate) if isinstance(config, dict) else None
        if not isinstance(rate, (int, float)) or not 8000 <= rate <= 192000:
            raise StreamProtocolError(f"config.sample_rate {rate!r}: give the PCM's rate in Hz (8000-192000)")
        self.client_rate = int(rate)
        if config.get("phrase_list"):  # Vosk's grammar: this model decodes free text only, said rather than ignored
            raise StreamProtocolError("config.phrase_list is not supported: this server decodes free text only")
        alternatives = config.get("max_alternatives", 0)
        if not isinstance(alternatives, int) or isinstance(alternatives, bool) or not 0 <= alternatives <= 20:
            raise StreamProtocolError(f"config.max_alternatives {alternatives!r}: give a whole number from 0 to 20")
        self.max_alternatives = alternatives

    def feed(self, pcm: bytes) -> tuple[str, np.ndarray | None]:
        """("final", utterance audio) at an endpoint, ("partial", utterance so far) when due, else ("none", None)."""
        if len(pcm) % 2:
            raise StreamProtocolError("binary frames must be 16-bit PCM (an even number of bytes)")
        audio = np.frombuffer(pcm, "<i2").astype(np.float32) / 32768.0
        if self.client_rate != SAMPLING_RATE:
            audio = librosa.resample(audio, orig_sr=self.client_rate, target_sr=SAMPLING_RATE, res_type="soxr_hq")
        self.pending = np.concatenate([self.pending, audio])
        endpoint = False
        while len(self.pending) >= VAD_FRAME:
            frame, self.pending = self.pending[:VAD_FRAME], self.pending[VAD_FRAME:]
            self.stream_samples += VAD_FRAME
            speech = self.vad.is_speech((np.clip(frame, -1, 1) * 32767).astype("<i2").tobytes(), SAMPLING_RATE)
            if not len(self.utterance):
                if speech:  # an utterance starts at its first speech frame, with the frames just before it
                    self.utterance = np.concatenate([*self.recent, frame])
                    self.utterance_start = (self.stream_samples - len(self.utterance)) / SAMPLING_RATE
                    self.recent, self.silent_frames, self.decoded_at = [], 0, 0
                else:
                    self.recent = [*self.recent, frame][-self.preroll_frames :] if self.preroll_frames else []
                continue
            self.utterance = np.concatenate([self.utterance, frame])
            self.silent_frames = 0 if speech else self.silent_frames + 1
            if self.silent_frames >= self.endpoint_frames or len(self.utterance) >= self.max_samples:
                endpoint = True
                break
        if endpoint:
            return "final", self._take_utterance()
        if len(self.utterance) - self.decoded_at >= self.partial_samples:
            self.decoded_at = len(self.utterance)
            return "partial", self.partial_window()
        return "none", None

    def partial_window(self) -> np.ndarray:
        """The audio a partial runs on: from `left_context_s` before the first unsettled frame to now."""
        settled = 0 if self.settled is None else len(self.settled)
        self.window_frame = max(0, settled - self.left_frames)
        return self.utterance[self.window_frame * self.frame_samples :]

    def finish(self) -> np.ndarray | None:
        """The last utterance's audio at end of stream (None when there is none to transcribe)."""
        if len(self.utterance):
            self.utterance = np.concatenate([self.utterance, self.pending])
            return self._take_utterance()
        return None

    def _take_utterance(self) -> np.ndarray:
        """The utterance, its trailing silence cut to the pre-roll's length: the endpoint's silence holds no word,
        and a clip that ends in 0.6 s of silence is normalised (zero mean, unit variance) unlike the same speech in
        a file, which changed its transcript."""
        keep = len(self.utterance) - max(0, self.silent_frames - self.preroll_frames) * VAD_FRAME
        audio, start = self.utterance[:keep], self.utterance_start
        self.utterance, self.silent_frames, self.decoded_at = np.zeros(0, np.float32), 0, 0
        self.settled, self.window_frame = None, 0
        self.taken_start = start
        return audio

    def _words(self, chunks: list[dict], conf: bool = True) -> list[dict]:
        words = []
        for chunk in chunks:
            word = {"word": chunk["text"], "start": round(self.taken_start + float(chunk["timestamp"][0]), 2),
                    "end": round(self.taken_start + float(chunk["timestamp"][1]), 2)}  # fmt: skip
            words.append({**word, "conf": chunk.get("confidence")} if conf else word)
        return words

    def result(self, logits: np.ndarray | None) -> dict:
        """The protocol's final message for an utterance (`logits` None: too short to transcribe): Vosk's
        {"text", "result"}, or with `max_alternatives` its {"alternatives": [{"text", "confidence", "result"}]}
        (the n best with an LM; greedy decoding has one)."""
        if self.max_alternatives:
            if logits is None:
                return {"alternatives": [{"text": "", "confidence": None, "result": []}]}
            return {"alternatives": [{"text": a["text"], "confidence": a["confidence"],
                                      "result": self._words(a.get("chunks", []), conf=False)}
                                     for a in self.decoder.alternatives(logits, self.max_alternatives)]}  # fmt: skip
        if logits is None:
            return {"text": "", "result": []}
        decoded = self.decoder(logits)
        return {"text": decoded["text"], "result": self._words(decoded.get("chunks", []))}

    def partial(self, logits: np.ndarray | None) -> dict:
        """The protocol's partial from the window's logits (`partial_window`; None: the window was too short)."""
        if logits is None:
            return {"partial": self.decoder(self.settled)["text"] if self.settled is not None else ""}
        settled = np.zeros((0, logits.shape[-1]), logits.dtype) if self.settled is None else self.settled
        frames = np.concatenate([settled, logits[len(settled) - self.window_frame :]])
        self.settled = frames[: max(len(settled), len(frames) - self.margin_frames)]
        return {"partial": self.decoder(frames)["text"]}
