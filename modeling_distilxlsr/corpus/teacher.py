"""The small pt-BR CTC teacher shipped with the package: a 6-layer wav2vec2 (1.75M parameters) trained with CTC on
the synthetic corpus (`teacher_pt_br/README.md` says how). It is `train_distill.py`'s default teacher, so that the
main job on the built-in corpus distils a model that has learned pt-BR into an ASR student, offline, in minutes."""

import os

SHIPPED_TEACHER_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "teacher_pt_br")


def shipped_teacher_dir() -> str:
    """The shipped teacher's folder; a clear error when an install left it out."""
    if not os.path.isfile(os.path.join(SHIPPED_TEACHER_DIR, "model.safetensors")):
        raise FileNotFoundError(
            f"The shipped pt-BR teacher is missing from {SHIPPED_TEACHER_DIR} (an install without package data?): "
            "reinstall with `pip install -e .`, or give --teacher."
        )
    return SHIPPED_TEACHER_DIR
