"""The recipes: distillation, CTC and classification fine-tuning, transcription and alignment, each one readable
script whose `main` runs top to bottom. They live here so that the installed console scripts (`distilxlsr-distill`,
...) come from inside the package instead of installing top-level modules named `transcribe` or `align` that could
clash with other packages; the repository's top-level `train_distill.py`, ... are links to these files, so
`python train_distill.py` and `accelerate launch train_distill.py` run exactly what the console scripts run.
The highest room: every other room is imported by them, and none imports them."""
