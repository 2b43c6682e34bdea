"""Files that another process may read while this one writes them (run records read by
`exp show` during training, metrics.jsonl polled by benchmarks, downloads into a shared
cache): the one way to write them, and the one way to read JSON and JSON-lines records.

Standard library only, so data/ can use it without importing anything heavy.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator


@contextlib.contextmanager
def atomic_write(path: Path, mode: str = "w", fsync: bool = False) -> Iterator[IO]:
  """Yields a temporary file beside `path` that replaces `path` (os.replace) once the block
  ends without an error, so a reader or a killed writer never leaves half a file; on an
  error the temporary file is removed and `path` is untouched. `fsync` makes the content
  durable before the rename, for records that must survive a crash of the machine."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with tempfile.NamedTemporaryFile(mode, dir=path.parent, prefix=f".{path.name}.",
                                   delete=False) as f:
    try:
      yield f
      f.flush()
      if fsync:
        os.fsync(f.fileno())
    except BaseException:
      f.close()
      os.unlink(f.name)
      raise
  os.replace(f.name, path)


def read_json(path: Path) -> Any | None:
  """The JSON in `path`, or None when it is absent."""
  try:
    return json.loads(Path(path).read_text())
  except FileNotFoundError:
    return None


def read_json_lines(path: Path) -> list[Any]:
  """The complete lines of a JSON-lines file (none when it is absent); a line that does not
  parse, such as a last line its writer is still writing (or was killed in), is skipped."""
  records = []
  try:
    lines = Path(path).read_text().splitlines()
  except FileNotFoundError:
    return records
  for line in lines:
    try:
      records.append(json.loads(line))
    except json.JSONDecodeError:
      continue
  return records
