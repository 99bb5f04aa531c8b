"""What the compiled (numba) loops must not do."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGES = ("api", "geo", "offers", "ranking")
ROOT = Path(__file__).resolve().parents[1]


def _compiled_functions():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            source = path.read_text()
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, ast.FunctionDef) and any(
                        "jit" in ast.unparse(d) for d in node.decorator_list):
                    yield f"{path.relative_to(ROOT)}:{node.name}", node


def test_compiled_loops_do_not_sort():
    # Seen in this suite: with `Thompson`'s heaps ranked by an argsort inside their compiled
    # function, a process that had just compiled `best_of_each` (which sorted inside
    # its own) got wrong rankings and then a segfault, depending on which of the two numba
    # had compiled in the process and which it had loaded from its cache. Sorting with numpy
    # around the compiled loops ended it.
    sorting = [name for name, node in _compiled_functions()
               for call in ast.walk(node) if isinstance(call, ast.Call)
               and ast.unparse(call.func).split(".")[-1] in {
                   "sort", "argsort", "lexsort", "unique", "sorted", "partition", "argpartition",
                   "median", "nanmedian", "percentile", "quantile"}]
    assert sorting == []


def test_the_check_finds_the_compiled_functions():
    names = {name for name, _ in _compiled_functions()}
    assert "ranking/exploration.py:_column_heaps" in names
    assert "offers/serving.py:_best_of_each" in names
