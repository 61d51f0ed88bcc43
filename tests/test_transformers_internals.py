"""Each transformers name outside its documented API that the project uses (transformers_internals.py) still exists
and does what we rely on, and no other module of the package imports one."""

import ast
import os

from conftest import REPO_ROOT

from modeling_distilxlsr import transformers_internals


def test_length_grouped_indices_is_a_permutation_that_groups_by_length():
    lengths = [5, 100, 6, 98, 7, 99, 4, 97]
    indices = transformers_internals.get_length_grouped_indices(lengths, batch_size=2, mega_batch_mult=4)
    assert sorted(indices) == list(range(len(lengths)))
    pairs = [sorted(lengths[i] for i in indices[k : k + 2]) for k in range(0, len(indices), 2)]
    assert all(high - low < 10 for low, high in pairs)  # long with long, short with short


def test_only_the_internals_module_imports_transformers_submodules_outside_the_public_ones():
    public = {
        "transformers",
        "transformers.initialization",
        "transformers.modeling_outputs",
        "transformers.activations",
    }
    offenders = []
    for root, _, names in os.walk(os.path.join(REPO_ROOT, "modeling_distilxlsr")):
        for name in names:
            if not name.endswith(".py") or name == "transformers_internals.py":
                continue
            path = os.path.join(root, name)
            for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
                absolute = isinstance(node, ast.ImportFrom) and node.level == 0
                if absolute and (node.module or "").startswith("transformers") and node.module not in public:
                    offenders.append(f"{os.path.relpath(path, REPO_ROOT)}:{node.lineno} {node.module}")
    assert offenders == []
