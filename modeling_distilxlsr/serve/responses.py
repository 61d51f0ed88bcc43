"""The shapes a transcription goes out in: OpenAI's json, text, srt, vtt and verbose_json (segments with
Whisper's fields, one per speech region; words with confidences), and the SSE events of `stream=true`."""

import json
import math

from fastapi.responses import PlainTextResponse

from ..inference.subtitles import cues_from_words, to_srt, to_vtt, words_from_chunks


def sse_event(data: dict) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


def token_usage(frames: int, characters: int) -> dict:
    """OpenAI's token usage for a streamed transcription: the model's frames in (its audio tokens), the characters
    out (a character CTC model's tokens)."""
    return {"type": "tokens", "input_tokens": frames, "output_tokens": characters, "total_tokens": frames + characters,
            "input_token_details": {"audio_tokens": frames, "text_tokens": 0}}  # fmt: skip


def format_result(result: dict, response_format: str, granularities: list[str], duration: float, include=()):
    """The response of `response_format`; with "subtitles" in `include` (json, verbose_json), also the SRT and VTT of
    the same words, cut by the same `cues_from_words` as the srt and vtt formats."""
    text = result["text"]
    usage = {"type": "duration", "seconds": math.ceil(duration)}  # what OpenAI bills whisper-1 by
    if response_format == "text":
        return PlainTextResponse(text + "\n")
    words = words_from_chunks(result.get("chunks", []))
    if response_format == "srt":
        return PlainTextResponse(to_srt(cues_from_words(words)), media_type="application/x-subrip")
    if response_format == "vtt":
        return PlainTextResponse(to_vtt(cues_from_words(words)), media_type="text/vtt")
    extra = {}
    if "subtitles" in include:
        cues = cues_from_words(words)
        extra["subtitles"] = {"srt": to_srt(cues), "vtt": to_vtt(cues)}
    if response_format == "json":
        return {"text": text, "usage": usage, **extra}
    body = {"task": "transcribe", "language": "portuguese", "duration": round(duration, 3), "text": text,
            "usage": usage, **extra}  # fmt: skip
    if "transcript_score" in result:  # a calibrated folder: P(CER <= 0.2), and whether the transcript passes 0.5
        body["transcript_score"], body["understood"] = result["transcript_score"], result["understood"]
    if "segment" in granularities:  # OpenAI's segment fields, one segment per speech region (`decode_regions`)
        body["segments"] = [
            {
                "id": i,
                "seek": 0,
                **segment,
                "confidence": _mean([w.confidence for w in words if segment["start"] <= w.start < segment["end"]]),
            }
            for i, segment in enumerate(result.get("segments", []))
        ]
    if "word" in granularities:
        body["words"] = [{"word": w.text, "start": w.start, "end": w.end, "confidence": w.confidence} for w in words]
    return body


def _mean(values):
    values = [v for v in values if v is not None]
    return round(sum(values) / len(values), 4) if values else None
