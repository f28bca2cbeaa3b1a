"""Safe extraction of user-uploaded ``.zip`` datasets.

A zip from a stranger can try to write outside its folder (``../``, absolute paths),
smuggle symlinks, or expand to fill the disk. Every member is checked before anything is
written, and the bytes actually written are counted (headers can lie about sizes).
"""

from __future__ import annotations

import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

from vision.errors import DatasetError, UnsafeArchiveError

MAX_TOTAL_BYTES = 2 * 1024**3
MAX_FILES = 50_000
_CHUNK = 1024 * 1024


def extract_zip(
    archive: str | Path,
    destination: str | Path,
    max_total_bytes: int = MAX_TOTAL_BYTES,
    max_files: int = MAX_FILES,
) -> Path:
    """Extract ``archive`` into the empty or new folder ``destination`` and return it.

    Raises:
        DatasetError: the file is missing or not a zip.
        UnsafeArchiveError: a member has an absolute path, ``..``, or is a link, or the
            archive holds more than ``max_files`` files or ``max_total_bytes`` bytes.
            Nothing is left in ``destination`` when it is raised.
    """
    archive, destination = Path(archive), Path(destination)
    if not archive.is_file():
        raise DatasetError(f"archive '{archive}' does not exist")
    if not zipfile.is_zipfile(archive):
        raise DatasetError(f"'{archive.name}' is not a zip archive")
    destination.mkdir(parents=True, exist_ok=True)
    if any(destination.iterdir()):
        raise DatasetError(f"extraction folder '{destination}' is not empty")
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
            _check_members(members, max_total_bytes, max_files)
            written = 0
            for member in members:
                written = _extract_member(zf, member, destination, written, max_total_bytes)
    except UnsafeArchiveError:
        _empty(destination)
        raise
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as error:
        _empty(destination)
        raise DatasetError(f"'{archive.name}' is a damaged zip archive ({error})") from None
    return destination


def _check_members(members: list[zipfile.ZipInfo], max_bytes: int, max_files: int) -> None:
    if len(members) > max_files:
        raise UnsafeArchiveError(f"archive holds {len(members):,} files, over the limit of {max_files:,}")
    declared = sum(m.file_size for m in members)
    if declared > max_bytes:
        raise UnsafeArchiveError(
            f"archive expands to {declared:,} bytes, over the limit of {max_bytes:,}"
        )
    for member in members:
        name = member.filename.replace("\\", "/")
        path = PurePosixPath(name)
        if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
            raise UnsafeArchiveError(f"archive member '{member.filename}' has an absolute path")
        if ".." in path.parts:
            raise UnsafeArchiveError(f"archive member '{member.filename}' points outside the archive (..)")
        mode = member.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise UnsafeArchiveError(f"archive member '{member.filename}' is a symbolic link")


def _extract_member(
    zf: zipfile.ZipFile, member: zipfile.ZipInfo, destination: Path, written: int, max_bytes: int
) -> int:
    target = destination.joinpath(*PurePosixPath(member.filename.replace("\\", "/")).parts)
    # Belt and braces: the resolved target must still be inside the destination.
    if not target.resolve().is_relative_to(destination.resolve()):
        raise UnsafeArchiveError(f"archive member '{member.filename}' points outside the archive")
    target.parent.mkdir(parents=True, exist_ok=True)
    with zf.open(member) as source, open(target, "wb") as sink:
        while chunk := source.read(_CHUNK):
            written += len(chunk)
            if written > max_bytes:
                raise UnsafeArchiveError(
                    f"archive expands past the limit of {max_bytes:,} bytes (sizes in its header are false)"
                )
            sink.write(chunk)
    return written


def _empty(folder: Path) -> None:
    for child in folder.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
