"""Metric files of a training run: ``metrics.jsonl``, ``metrics.csv`` and TensorBoard.

Only rank 0 writes (the trainer creates a :class:`MetricsLogger` there and nowhere else).
Every row is a flat dict; ``kind`` says whether it is a ``"step"`` or an ``"epoch"`` row.

- ``metrics.jsonl``: one JSON object per line, every key of the row.
- ``metrics.csv``: the same rows in columns. A row that brings a new key widens the header
  (the file is rewritten once, which happens at the first epoch row), so the CSV always
  loads with ``csv.DictReader`` / pandas.
- TensorBoard (``tensorboard/``), when the ``tensorboard`` package is installed: every
  numeric value as a scalar, step rows under ``step/``, epoch rows under ``epoch/``.

On resume, :meth:`MetricsLogger.truncate_after` drops rows past the checkpoint's step, so a
preempted-and-resumed run leaves the same files as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any


def plural(n: int, word: str) -> str:
    """``"1 step"``, ``"2 steps"``: a count for the console."""
    return f"{n} {word}{'' if n == 1 else 's'}"

JSONL_NAME = "metrics.jsonl"
CSV_NAME = "metrics.csv"


def _plain(v: Any) -> Any:
    """A JSON-safe value (NaN and Inf become strings, tensors and numpy scalars floats)."""
    if hasattr(v, "item") and callable(v.item):
        try:
            v = v.item()
        except (ValueError, RuntimeError):
            return str(v)
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return str(v)


@contextlib.contextmanager
def _naming(path: Path) -> Iterator[None]:
    """An ``OSError`` from writing ``path`` (a full disk fails on write or close, with no file
    name) names it, so that the command line prints one line instead of a traceback."""
    try:
        yield
    except OSError as e:
        if not e.filename:
            e.filename = str(path)
        raise


class MetricsLogger:
    """Appends rows to the run's metric files (and TensorBoard when installed)."""

    def __init__(self, run_dir: str | os.PathLike[str], tensorboard: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl_path = self.run_dir / JSONL_NAME
        self.csv_path = self.run_dir / CSV_NAME
        self._columns: list[str] = self._read_csv_header()
        self._tb: Any = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

                self._tb = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"))
            except Exception:  # not installed (ImportError) or broken: the files are enough
                self._tb = None

    def _read_csv_header(self) -> list[str]:
        if not self.csv_path.is_file():
            return []
        with open(self.csv_path, newline="") as f:
            return next(csv.reader(f), [])

    def log(self, row: Mapping[str, Any]) -> None:
        """Append one row (a flat dict) to every sink."""
        row = {k: _plain(v) for k, v in row.items()}
        with _naming(self.jsonl_path), open(self.jsonl_path, "a") as f:
            f.write(json.dumps(row) + "\n")
        new = [k for k in row if k not in self._columns]
        if new:  # a wider header: rewrite the CSV from the JSONL file, this row included
            self._columns.extend(new)
            with _naming(self.csv_path):
                self._rewrite_csv()
        else:
            with _naming(self.csv_path), open(self.csv_path, "a", newline="") as f:
                csv.DictWriter(f, fieldnames=self._columns).writerow(row)
        if self._tb is not None:
            kind = row.get("kind", "step")
            step = row.get("step", 0)
            for k, v in row.items():
                if k in ("kind", "step") or isinstance(v, bool) or not isinstance(v, (int, float)):
                    continue
                self._tb.add_scalar(f"{kind}/{k}", v, global_step=int(step) if step is not None else 0)

    def _rewrite_csv(self) -> None:
        rows = self.read_rows()
        tmp = self.csv_path.with_name(f".{CSV_NAME}.tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self._columns)
            w.writeheader()
            for r in rows:
                w.writerow({k: _plain(v) for k, v in r.items() if k in self._columns})
        os.replace(tmp, self.csv_path)

    def read_rows(self) -> list[dict[str, Any]]:
        """Every row logged so far (from ``metrics.jsonl``)."""
        return read_metrics(self.jsonl_path.parent)

    def truncate_after(self, step: int) -> None:
        """Drop the rows logged after optimizer step ``step`` (resume), in both files."""
        rows, bad = _read_jsonl(self.jsonl_path)
        keep = [r for r in rows if int(r.get("step", 0)) <= step]
        if len(keep) == len(rows) and not bad:  # else rewrite: a half line must not join the next row
            return
        tmp = self.jsonl_path.with_name(f".{JSONL_NAME}.tmp")
        with open(tmp, "w") as f:
            for r in keep:
                f.write(json.dumps(r) + "\n")
        os.replace(tmp, self.jsonl_path)
        self._rewrite_csv()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def read_metrics(run_dir: str | os.PathLike[str], kind: str | None = None) -> list[dict[str, Any]]:
    """The rows of a run's ``metrics.jsonl`` (only ``kind`` rows when given). A line that is not
    JSON (half written when the process was killed or the disk filled) is left out, with a
    warning."""
    rows, _ = _read_jsonl(Path(run_dir) / JSONL_NAME)
    return [r for r in rows if kind is None or r.get("kind") == kind]


def _read_jsonl(path: Path) -> tuple[list[dict[str, Any]], int]:
    """``(rows, number of lines that did not parse)`` of a JSONL file (``([], 0)`` if missing)."""
    if not path.is_file():
        return [], 0
    rows, bad = [], 0
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                row = None
            if isinstance(row, dict):
                rows.append(row)
            else:  # not JSON, or JSON but not a row (an object)
                bad += 1
    if bad:
        import warnings

        warnings.warn(f"{path}: left out {bad} line(s) that are not JSON objects (half written when the run "
                      f"was killed?)", stacklevel=3)
    return rows, bad
