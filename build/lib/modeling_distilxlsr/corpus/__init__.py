"""The synthetic pt-BR speech corpus (espeak-ng): `python -m modeling_distilxlsr.corpus OUT_DIR`."""
