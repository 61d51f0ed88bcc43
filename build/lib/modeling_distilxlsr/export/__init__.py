"""Export: a plain Wav2Vec2 folder (no remote code), and ONNX graphs with int8 quantisation."""
