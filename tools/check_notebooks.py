"""Keep notebooks committed clean: no outputs, no execution counts, no widget state.

    python tools/check_notebooks.py notebooks            # exit 1 and list offenders
    python tools/check_notebooks.py --strip notebooks    # clean them in place

A stripped notebook tests nothing by itself under nbval: its claims live in assert cells.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

KEEP_METADATA = {"kernelspec", "language_info"}
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def problems(nb: dict) -> list[str]:
    """What makes ``nb`` (a parsed .ipynb) unclean, one line per problem."""
    found = []
    for i, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        if cell.get("outputs"):
            found.append(f"cell {i} has outputs")
        if cell.get("execution_count") is not None:
            found.append(f"cell {i} has an execution count")
    extra = sorted(set(nb.get("metadata", {})) - KEEP_METADATA)
    if extra:
        found.append(f"notebook metadata carries {extra}")
    if nb.get("metadata", {}).get("kernelspec", {}).get("name") != "python3":
        found.append("notebook kernelspec is not python3 (the kit's kernel)")
    return found


def strip(nb: dict) -> dict:
    """Return ``nb`` without outputs, execution counts, cell ids' metadata noise or widget state."""
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        cell["metadata"] = {k: v for k, v in cell.get("metadata", {}).items() if k == "tags"}
    nb["metadata"] = {k: v for k, v in nb.get("metadata", {}).items() if k in KEEP_METADATA}
    nb["metadata"]["kernelspec"] = dict(KERNELSPEC)
    return nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", type=Path, help="notebooks or folders of notebooks")
    parser.add_argument("--strip", action="store_true", help="clean the notebooks in place instead of checking")
    args = parser.parse_args(argv)
    notebooks = sorted(
        p for path in args.paths for p in ([path] if path.is_file() else path.rglob("*.ipynb"))
        if ".ipynb_checkpoints" not in p.parts
    )
    dirty = 0
    for path in notebooks:
        nb = json.loads(path.read_text(encoding="utf-8"))
        if args.strip:
            path.write_text(json.dumps(strip(nb), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
            continue
        for line in problems(nb):
            print(f"{path}: {line}")
            dirty += 1
    if dirty:
        print(f"{dirty} problem(s): run `make strip-notebooks` before committing")
        return 1
    print(f"{len(notebooks)} notebook(s) clean" if not args.strip else f"stripped {len(notebooks)} notebook(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
