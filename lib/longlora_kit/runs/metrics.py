"""``metrics.jsonl``: one JSON row per logged step, appended as the run goes.

Rows are only ever appended, and cut back to the checkpoint's step when a run resumes, so the file
holds each step once however often the run was killed:

>>> import tempfile, pathlib
>>> out = pathlib.Path(tempfile.mkdtemp())
>>> for step in (1, 2, 3):
...     append_row(out, {"step": step, "loss": 5.0 - step})
>>> [row["loss"] for row in truncate(out, step=2)]  # killed after step 3, resumed from step 2
[4.0, 3.0]
>>> [row["step"] for row in read_metrics(out)]
[1, 2]
"""

from __future__ import annotations

import json
from pathlib import Path

from .atomic import boundary, write_text
from .layout import METRICS_FILE


def append_row(out_dir: str | Path, row: dict) -> None:
    """Append one row (a step's metrics) to ``out_dir/metrics.jsonl``."""
    path = Path(out_dir) / METRICS_FILE
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
    boundary("appended", path)


def read_metrics(out_dir: str | Path, partial_last_line: bool = False) -> list[dict]:
    """The rows of ``out_dir/metrics.jsonl`` (none if it is absent), steps strictly increasing.

    ``partial_last_line=True`` drops a last line a kill cut short (a resuming run never kept it);
    anything else that does not parse, or a step out of order, is a ``ValueError`` naming the file.
    """
    path = Path(out_dir) / METRICS_FILE
    if not path.is_file():
        return []
    lines = path.read_text().splitlines(keepends=True)
    rows = []
    for number, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
            step = row["step"] if isinstance(row, dict) else None
            if not isinstance(step, int) or (rows and step <= rows[-1]["step"]):
                raise ValueError(f"step {step!r} does not follow step {rows[-1]['step'] if rows else 0}")
        except (ValueError, KeyError) as err:
            if partial_last_line and number == len(lines) and not line.endswith("\n"):
                break
            raise ValueError(f"{path} line {number} is damaged ({err}); the run folder was edited: "
                             "restore the file, or re-run with --overwrite to start the run over") from None
        rows.append(row)
    return rows


def truncate(out_dir: str | Path, step: int) -> list[dict]:
    """Keep the rows up to ``step`` (the checkpoint a run resumes from; 0 = none); return them."""
    rows = [row for row in read_metrics(out_dir, partial_last_line=True) if row["step"] <= step]
    path = Path(out_dir) / METRICS_FILE
    if path.exists() or rows:
        write_text(path, "".join(json.dumps(row) + "\n" for row in rows))
    return rows


__all__ = ["append_row", "read_metrics", "truncate"]
