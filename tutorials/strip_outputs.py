"""Clear the outputs of the tutorial notebooks before committing them: ``python tutorials/strip_outputs.py``.

The notebooks are kept in git without outputs (every number in them must come from running
them); ``tests/test_tutorials.py`` refuses a committed notebook with outputs. Give notebook
paths to strip only those; without arguments every ``*.ipynb`` next to this script is stripped.
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat

#: Cell metadata keys that record a run (timings, collapsed or scrolled state) rather than content.
RUN_METADATA = ("execution", "collapsed", "scrolled", "ExecuteTime")


def strip(path: Path) -> bool:
    """Remove outputs, execution counts and run metadata from the notebook at ``path``; True if it changed."""
    nb = nbformat.read(path, as_version=4)
    before = nbformat.writes(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        for key in RUN_METADATA:
            cell.metadata.pop(key, None)
    nb.metadata.pop("widgets", None)
    after = nbformat.writes(nb)
    if after != before:
        path.write_text(after, encoding="utf-8")
    return after != before


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv] or sorted(Path(__file__).resolve().parent.glob("*.ipynb"))
    for path in paths:
        if not path.is_file():
            print(f"error: no notebook at {path}", file=sys.stderr)
            return 2
        print(f"{path}: {'stripped' if strip(path) else 'already clean'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
