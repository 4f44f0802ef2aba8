"""Writing a file so that a crash never leaves half of it: write a sibling temporary file, then rename.

One helper for every file the package writes: stored results and reports
(JSON, :func:`write_json_atomic`) and checkpoints (``torch.save``,
:func:`torch_save_atomic`). ``os.replace`` is atomic on POSIX and Windows, so
a reader sees either the old file or the new one (chapter 1, *How to run this book*).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable


def write_atomic(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(fh)`` on a temporary binary file beside ``path``, sync it, then rename it to ``path``.

    The folder is created if missing; on any error the temporary file is removed
    and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json_atomic(path: str | os.PathLike, payload: Any) -> None:
    """``payload`` as JSON (indent 1, sorted keys, final newline), written atomically."""

    def write(fh: IO[bytes]) -> None:
        fh.write((json.dumps(payload, indent=1, sort_keys=True) + "\n").encode())

    write_atomic(path, write)


def torch_save_atomic(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj)`` written atomically: a crash mid-write keeps the previous checkpoint."""
    import torch

    write_atomic(path, lambda fh: torch.save(obj, fh))


__all__ = ["write_atomic", "write_json_atomic", "torch_save_atomic"]
