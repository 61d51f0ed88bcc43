"""The transformers names this project uses that are not part of its documented API, in one place, each with a test
(tests/test_transformers_internals.py) so that a release that moves one fails there, by name, and not deep in a run.
None of them is used by the files that travel to the Hub (`models/`), which import public names only.

- `get_length_grouped_indices` (transformers.trainer_pt_utils): the length-grouped shuffle of `Trainer`'s
  `group_by_length`, so our batches are grouped the way transformers users know (audio/dataset.py).
"""

from transformers.trainer_pt_utils import get_length_grouped_indices

__all__ = ["get_length_grouped_indices"]
