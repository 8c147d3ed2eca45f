"""Cache folder, atomic writes, checksums and the data error type.

Corpora are built on first use into a per-machine cache folder. Every build writes into a
temporary folder next to its final place and is renamed into place only when it succeeded,
so an interrupted or concurrent build never leaves a half-written corpus behind. A file
lock (``.<name>.lock`` beside the folder) serialises builds of the same corpus across
processes: the second process waits, then finds the finished folder (``locked_build``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock


class DataError(ValueError):
    """Bad input data, located by file, line and field.

    Args:
        path: The file that holds the bad data.
        line: 1-based line number, or None when the problem concerns the whole file.
        field: Name of the offending field or column, or None when no single field is at fault.
        message: What is wrong.
    """

    def __init__(
        self, path: str | os.PathLike[str], line: int | None, field: str | None, message: str
    ) -> None:
        self.path = Path(path)
        self.line = line
        self.field = field
        self.message = message
        where = str(self.path) if line is None else f"{self.path}:{line}"
        what = f"field '{field}': " if field is not None else ""
        super().__init__(f"{where}: {what}{message}")

    def __reduce__(self) -> tuple[Any, ...]:
        # Default exception pickling passes only str(self) back; keep all four arguments.
        return (type(self), (self.path, self.line, self.field, self.message))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def build_lock(final: str | os.PathLike[str], timeout: float = -1) -> FileLock:
    """The inter-process lock guarding the build of ``final`` (a file beside it)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(final.parent / f".{final.name}.lock"), timeout=timeout)


def _remove_stale_temps(final: Path) -> None:
    """Temporary folders of builds that were killed; call only while holding the lock
    (a live builder holds it, so every temp folder found then is dead)."""
    for stale in final.parent.glob(f".{final.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)


@contextlib.contextmanager
def locked_build(
    final: str | os.PathLike[str], complete: str = "manifest.json"
) -> Iterator[Path | None]:
    """Build ``final`` at most once across processes.

    Yields ``None`` when ``final/complete`` already exists (built before, or by another
    process while this one waited for the lock); otherwise a temporary folder to fill,
    which becomes ``final`` when the block succeeds. A build killed half-way leaves only
    its temporary folder, never ``final``; the next build removes it. Usage::

        with locked_build(folder) as tmp:
            if tmp is not None:
                ...  # write files into tmp, manifest.json last

    Args:
        final: Where the finished folder should end up.
        complete: The file whose presence marks a finished build.
    """
    final = Path(final)
    with build_lock(final):
        if (final / complete).is_file():
            yield None
            return
        if final.exists():  # no completion marker: not ours to trust or to delete
            raise DataError(final, None, None, f"folder exists without {complete}; delete it")
        _remove_stale_temps(final)
        with _atomic_dir_unlocked(final) as tmp:
            yield tmp


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Like ``_atomic_dir_unlocked`` but holding the build lock of ``final``: concurrent
    builds of one corpus run one after another (the loser's result is discarded), and
    temporary folders of killed builds are removed. Prefer :func:`locked_build`, which
    also skips the second build."""
    final = Path(final)
    with build_lock(final):
        _remove_stale_temps(final)
        with _atomic_dir_unlocked(final) as tmp:
            yield tmp


@contextlib.contextmanager
def _atomic_dir_unlocked(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder that becomes ``final`` only if the block succeeds.

    On an exception the temporary folder is removed and the exception propagates. If
    ``final`` already exists when the block ends (another process finished the same build
    first) the existing folder is kept and the new one discarded: both were built from the
    same inputs, and replacing a folder that readers may already use is not atomic.

    Args:
        final: Where the finished folder should end up.

    Yields:
        The temporary folder to fill; it is on the same file system as ``final``.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        # mkdtemp makes the folder private (0700); a shared cache wants the usual mode.
        os.chmod(tmp, 0o777 & ~_umask())
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(tmp, ignore_errors=True)
        return
    try:
        os.rename(tmp, final)
    except OSError:
        # Lost a race between the check above and the rename: keep the winner's folder.
        shutil.rmtree(tmp, ignore_errors=True)
        if not final.exists():
            raise


def sha256_file(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """Return the hex SHA-256 digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Return the hex SHA-256 digest of a byte string."""
    return hashlib.sha256(data).hexdigest()


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented UTF-8 JSON so that readers see the old or the new file.

    Args:
        path: Destination file; its parent folder is created if missing.
        obj: Any JSON-serialisable object.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, ensure_ascii=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
