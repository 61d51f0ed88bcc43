"""The package's rooms and the rules between them, read from the code's own imports (ast), so they cannot rot:
a lower room never imports a higher one, `models/` imports nothing of ours outside itself, the Hub files import only
torch, transformers and each other, `inference/` never reaches training code, no import circles, every import at the
top of its file (a lazy import only of an optional dependency, with a comment saying so), no module over 400 lines.

`import_rule_violations` is run on the package and on small packages made to break each rule: the checks must fail
when a rule is broken, not only pass today."""

import ast
import os
import textwrap

try:
    import tomllib
except ImportError:  # Python 3.10: the dev extra installs tomli
    import tomli as tomllib

import pytest
from conftest import REPO_ROOT

from modeling_distilxlsr.models.configuration_distilxlsr import HUB_CODE_FILES

PACKAGE = "modeling_distilxlsr"
# Rank of each room: a module may import its own room and rooms of a lower rank only.
ROOM_RANKS = {
    "errors": 0,
    "cache": 0,
    "transformers_internals": 0,
    "models": 0,
    "text": 1,
    "audio": 2,
    "corpus": 3,
    "distill": 5,
    "inference": 4,
    "export": 5,
    "lm": 5,
    "serve": 5,
    "training": 6,
    "recipes": 7,  # the scripts (the top-level train_distill.py, ... link to them): no room imports them
}
# Rooms that a room must never import, whatever the ranks say (the rule, kept explicit).
FORBIDDEN = {
    "inference": {"training", "distill", "corpus", "lm"},
    "serve": {"training", "distill", "corpus"},
    "models": set(ROOM_RANKS) - {"models", "errors"},  # the one user-error base class, the lowest room
}
HUB_FILES = tuple(name.removesuffix(".py") for name in HUB_CODE_FILES)
HUB_ALLOWED_TOP_LEVEL = {"torch", "transformers", "huggingface_hub", "contextlib", "dataclasses", "math"}
# Optional dependencies (extras) that may be imported lazily, inside a function, with a comment on the line.
OPTIONAL_DEPENDENCIES = {
    "onnx",
    "onnxruntime",
    "onnxscript",
    "pyctcdecode",
    "kenlm",
    "pyroomacoustics",
    "audiomentations",
    "espeakng_loader",
    "datasets",
    "matplotlib",
    "sklearn",
    "nemo_text_processing",
    "ctranslate2",  # the integrations extra
}
RECIPES = {"train_distill", "finetune_ctc", "finetune_classification", "transcribe", "align", "benchmarks", "tools"}
MAX_LINES = 400


def module_name(package_dir: str, path: str) -> str:
    relative = os.path.relpath(path, os.path.dirname(package_dir))[:-3].replace(os.sep, ".")
    return relative.removesuffix(".__init__")


def resolve(module: str, node: ast.ImportFrom, is_package: bool) -> list[str]:
    """Absolute names an `ImportFrom` brings in: `module.name` for each name (a submodule or a symbol)."""
    if node.level == 0:
        base = node.module or ""
    else:
        parts = module.split(".")
        parts = parts if is_package else parts[:-1]
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join(parts + ([node.module] if node.module else []))
    return [f"{base}.{alias.name}" for alias in node.names]


def read_imports(package_dir: str):
    """{module: [(imported absolute name, line, is_top_level, line text)]} and each module's line count."""
    imports, lines = {}, {}
    for root, _, names in os.walk(package_dir):
        for name in sorted(names):
            if not name.endswith(".py"):
                continue
            path = os.path.join(root, name)
            source = open(path, encoding="utf-8").read()
            module = module_name(package_dir, path)
            lines[module] = source.count("\n")
            tree = ast.parse(source)
            top = {id(node) for node in tree.body}
            source_lines = source.splitlines()
            found = []
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    targets = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    targets = resolve(module, node, name == "__init__.py")
                else:
                    continue
                for target in targets:
                    found.append((target, node.lineno, id(node) in top, source_lines[node.lineno - 1]))
            imports[module] = found
    return imports, lines


def room_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == PACKAGE else None


def own_module(target: str, modules) -> str | None:
    """The package module `target` names (itself, or the module holding the symbol)."""
    while target:
        if target in modules:
            return target
        target = target.rpartition(".")[0]
    return None


def import_rule_violations(package_dir: str) -> list[str]:
    imports, lines = read_imports(package_dir)
    modules = set(imports)
    problems = []
    graph = {}
    for module, found in imports.items():
        room = room_of(module)
        graph[module] = set()
        if lines[module] > MAX_LINES:
            problems.append(f"{module}: {lines[module]} lines (at most {MAX_LINES})")
        for target, line, top_level, text in found:
            where = f"{module}:{line}"
            top_name = target.split(".")[0]
            if top_name in RECIPES:
                problems.append(f"{where}: the library imports a recipe ({target})")
            if not top_level and not (top_name in OPTIONAL_DEPENDENCIES and "#" in text):
                problems.append(f"{where}: import inside a function ({target}); move it to the top of the file")
            if module.split(".")[-1] in HUB_FILES and room == "models":
                if top_name != PACKAGE and top_name not in HUB_ALLOWED_TOP_LEVEL:
                    problems.append(f"{where}: a Hub file imports {target}")
                if top_name == "transformers" and "._" in target.replace("transformers.", "."):
                    problems.append(f"{where}: a Hub file imports a private transformers name ({target})")
                if top_name == "transformers" and ".models." in target:
                    problems.append(f"{where}: a Hub file imports a transformers model internals module ({target})")
            imported = own_module(target, modules)
            if imported is None or imported == module:
                continue
            if top_level:
                graph[module].add(imported)
            target_room = room_of(imported)
            if module.split(".")[-1] in HUB_FILES and room == "models" and imported.split(".")[-1] not in HUB_FILES:
                problems.append(f"{where}: a Hub file imports {imported}, which does not travel to the Hub")
            if room is None or target_room is None or room == target_room:
                continue
            if target_room in FORBIDDEN.get(room, ()):
                problems.append(f"{where}: {room}/ must never import {target_room}/ ({imported})")
            elif ROOM_RANKS.get(target_room, 99) > ROOM_RANKS.get(room, 99):
                problems.append(f"{where}: {room}/ imports the higher room {target_room}/ ({imported})")
    problems += [f"import circle: {' -> '.join(cycle)}" for cycle in import_cycles(graph)]
    return problems


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                cycles.append(sorted(component) + [sorted(component)[0]])

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_the_package_keeps_every_room_rule():
    problems = import_rule_violations(os.path.join(REPO_ROOT, PACKAGE))
    assert problems == [], "\n".join(problems)


def test_every_room_of_the_package_is_ranked_and_installed():
    package_dir = os.path.join(REPO_ROOT, PACKAGE)
    rooms = {n.removesuffix(".py") for n in os.listdir(package_dir) if not n.startswith("__")}
    assert rooms == set(ROOM_RANKS)
    folders = {f"{PACKAGE}.{n}" for n in rooms if os.path.isdir(os.path.join(package_dir, n))}
    listed = set(
        tomllib.loads(open(os.path.join(REPO_ROOT, "pyproject.toml")).read())["tool"]["setuptools"]["packages"]
    )
    assert folders | {PACKAGE} <= listed  # a room missing from the list would be missing from the wheel


def make_package(tmp_path, files: dict[str, str]) -> str:
    root = tmp_path / PACKAGE
    for path, text in {"__init__.py": "", **files}.items():
        file = root / path
        file.parent.mkdir(parents=True, exist_ok=True)
        for parent in file.relative_to(root).parents:
            (root / parent / "__init__.py").touch()
        file.write_text(textwrap.dedent(text))
    return str(root)


@pytest.mark.parametrize(
    "files, expected",
    [
        ({"inference/run.py": "from ..training.loop import x\n", "training/loop.py": "x = 1\n"}, "must never import"),
        ({"audio/decode.py": "from ..export.onnx import y\n", "export/onnx.py": "y = 1\n"}, "higher room"),
        ({"models/modeling_distilxlsr.py": "from ..audio.decode import z\n", "audio/decode.py": "z = 1\n"}, "models/"),
        ({"models/modeling_distilxlsr.py": "import numpy\n"}, "a Hub file imports numpy"),
        (
            {"models/modeling_distilxlsr.py": "from transformers.models.wav2vec2.modeling_wav2vec2 import L\n"},
            "transformers model internals",
        ),
        (
            {"models/modeling_distilxlsr.py": "from .folder import w\n", "models/folder.py": "w = 1\n"},
            "does not travel",
        ),
        ({"text/a.py": "from .b import f\nf = 1\n", "text/b.py": "from .a import f\n"}, "import circle"),
        ({"text/a.py": "def f():\n    from .b import g\n", "text/b.py": "g = 1\n"}, "import inside a function"),
        ({"text/a.py": "def f():\n    import onnxruntime\n"}, "import inside a function"),
        ({"text/a.py": "import train_distill\n"}, "imports a recipe"),
        ({"text/a.py": "x = 1\n" * (MAX_LINES + 1)}, "lines (at most"),
    ],
)
def test_the_rule_check_fails_when_a_rule_is_broken(tmp_path, files, expected):
    problems = import_rule_violations(make_package(tmp_path, files))
    assert any(expected in problem for problem in problems), problems


def test_a_commented_lazy_import_of_an_optional_dependency_is_allowed(tmp_path):
    package = make_package(tmp_path, {"text/a.py": "def f():\n    import onnxruntime  # lazy: the onnx extra\n"})
    assert import_rule_violations(package) == []


def test_no_test_benchmark_or_tool_edits_sys_path():
    """tests/ and benchmarks/ import the package and each other as installed modules (the repo root is on the path
    for pytest and for `python benchmarks/x.py` alike), with every import at the top of the file: a `sys.path`
    edit would hide an import that only works from one folder."""
    problems = []
    for folder in ("tests", "benchmarks", "tools"):
        for name in sorted(os.listdir(os.path.join(REPO_ROOT, folder))):
            if not name.endswith(".py"):
                continue
            path = os.path.join(REPO_ROOT, folder, name)
            tree = ast.parse(open(path, encoding="utf-8").read())
            # conftest.run_in_process puts a script's folder first and restores the path after: what the
            # interpreter itself does for `python SCRIPT.py`, not an import path of the tests'
            exempt = {
                id(inner)
                for node in ast.walk(tree)
                if isinstance(node, ast.FunctionDef) and (name, node.name) == ("conftest.py", "run_in_process")
                for inner in ast.walk(node)
            }
            for node in ast.walk(tree):
                if id(node) in exempt:
                    continue
                call = node.func if isinstance(node, ast.Call) else None
                if isinstance(call, ast.Attribute) and ast.unparse(call.value) == "sys.path":
                    problems.append(f"{folder}/{name}:{node.lineno}: sys.path.{call.attr}")
    assert problems == [], "\n".join(problems)


def test_every_recipe_stays_a_recipe():
    """The recipes read top to bottom: at most 400 lines each, the library code they call lives in the package."""
    for recipe in ("train_distill", "finetune_ctc", "finetune_classification"):
        lines = open(os.path.join(REPO_ROOT, f"{recipe}.py"), encoding="utf-8").read().count("\n")
        assert lines <= MAX_LINES, f"{recipe}.py: {lines} lines"
