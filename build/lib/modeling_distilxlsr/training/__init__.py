"""What the training recipes share: run arguments, loop pieces, checkpoints and resume checks, the output folder, task
data (CTC, classification), model cards, plots, Hub upload."""
