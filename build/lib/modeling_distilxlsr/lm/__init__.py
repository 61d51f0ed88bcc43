"""N-gram language models: build with KenLM, attach to an ASR folder, tune; `python -m modeling_distilxlsr.lm`."""
