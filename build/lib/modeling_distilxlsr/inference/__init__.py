"""Transcription: the ASR pipeline and ONNX Runtime backends, the automatic choice between them, batching by length,
LM decoding, transcript files. Never imports training, distillation, the corpus or the LM builder."""
