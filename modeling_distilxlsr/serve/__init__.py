"""The OpenAI-compatible HTTP transcription server (`distilxlsr-serve`): FastAPI app, dynamic batcher, CLI."""
