"""File tools, confined to one root directory (by default where asynclm-chat was started).

A path may be relative to the root or absolute inside it. ``..``, absolute paths elsewhere and symlinks
that lead out of the root are all refused: every path is resolved (symlinks followed) before use and
must still be inside the resolved root.
"""

from __future__ import annotations

import os
import re
import stat
import time
from pathlib import Path

import aiofiles

READ_LIMIT = 256 * 1024  # bytes of a file the model may read in one call
SEARCH_FILE_LIMIT = 2 * 1024 * 1024  # files larger than this are not searched
SKIP_DIRS = {".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv", ".mypy_cache", ".pytest_cache"}


class SandboxError(PermissionError):
    pass


class FileSandbox:
    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root or os.getcwd()).expanduser().resolve()

    def resolve(self, path: str) -> Path:
        raw = Path(path).expanduser()
        candidate = raw if raw.is_absolute() else self.root / raw
        resolved = candidate.resolve()
        if resolved != self.root and not resolved.is_relative_to(self.root):
            why = "a symlink that leads" if _has_escaping_link(candidate, self.root) else "a path"
            raise SandboxError(f"{path!r} is {why} outside the allowed folder {self.root}")
        if not resolved.exists():
            raise FileNotFoundError(f"{path!r} does not exist")
        return resolved

    def readable(self, path: str) -> Path:
        """A file or folder the tools may read: named pipes, sockets and devices are refused, since
        reading one can block for ever or never end."""
        resolved = self.resolve(path)
        kind = _special_kind(resolved.stat().st_mode)
        if kind:
            raise SandboxError(f"{path!r} is {kind}, not a regular file; only files and folders are read")
        return resolved

    def show(self, path: Path) -> str:
        rel = path.relative_to(self.root)
        return "." if str(rel) == "." else str(rel)

    # --- the tools ----------------------------------------------------------------------------

    def list_dir(self, path: str = ".", show_hidden: bool = False) -> str:
        """List a folder: each entry with its kind and size.

        Args:
            path: the folder, relative to the working folder.
            show_hidden: include names starting with a dot.
        """
        folder = self.readable(path)
        if not folder.is_dir():
            raise NotADirectoryError(f"{path!r} is not a folder")
        rows = []
        entries = sorted(folder.iterdir(), key=lambda p: (not p.is_dir(), p.name.lower()))
        for entry in entries:
            if not show_hidden and entry.name.startswith("."):
                continue
            try:
                st = entry.lstat()
            except OSError:
                continue
            if stat.S_ISLNK(st.st_mode):
                rows.append(f"{entry.name} -> {os.readlink(entry)}")
            elif stat.S_ISDIR(st.st_mode):
                rows.append(f"{entry.name}/")
            else:
                rows.append(f"{entry.name}  {_size(st.st_size)}")
            if len(rows) >= 500:
                rows.append(f"... and {len(entries) - 500} more")
                break
        return "\n".join(rows) if rows else "(empty folder)"

    async def read_file(self, path: str, start_line: int | None = None, end_line: int | None = None) -> str:
        """Read a text file, or lines start_line..end_line of it (1-based, inclusive).

        Args:
            path: the file, relative to the working folder.
            start_line: first line to return.
            end_line: last line to return.
        """
        file = self.readable(path)
        if file.is_dir():
            raise IsADirectoryError(f"{path!r} is a folder; use list_dir")
        size = file.stat().st_size
        async with aiofiles.open(file, "rb") as f:
            if start_line is None and end_line is None:
                data = await f.read(READ_LIMIT)
                if b"\0" in data[:8192]:
                    return f"{self.show(file)} is a binary file of {_size(size)}"
                text = data.decode("utf-8", errors="replace")
                if size > READ_LIMIT:
                    text += f"\n…[read the first {_size(READ_LIMIT)} of {_size(size)}; ask for a line range]"
                return text
            first = max(1, start_line or 1)
            last = end_line if end_line is not None else first + 199
            if last < first:
                raise ValueError("end_line is before start_line")
            lines, n, total = [], 0, 0
            async for raw in f:
                n += 1
                if first <= n <= last:
                    lines.append(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
                    total += len(raw)
                    if total > READ_LIMIT:
                        lines.append(f"…[stopped at line {n}: size limit]")
                        break
                if n > last:
                    break
        if not lines:
            return f"{self.show(file)} has {n} lines; nothing in {first}..{last}"
        return "\n".join(lines)

    def search_files(self, pattern: str, path: str = ".", regex: bool = False, max_results: int = 50) -> str:
        """Search text across files, like grep: lines matching the pattern, as file:line: text.

        Args:
            pattern: the text to find (case-insensitive), or a regular expression with regex=true.
            path: the folder (or file) to search in.
            regex: treat the pattern as a regular expression.
            max_results: stop after this many matching lines.
        """
        top = self.readable(path)
        try:
            rx = re.compile(pattern if regex else re.escape(pattern), re.IGNORECASE)
        except re.error as exc:
            raise ValueError(f"bad regular expression: {exc}") from None
        max_results = max(1, min(max_results, 1000))
        hits: list[str] = []
        files = [top] if top.is_file() else _walk(top)
        for file in files:
            try:
                st = file.stat()
                if not stat.S_ISREG(st.st_mode) or st.st_size > SEARCH_FILE_LIMIT:
                    continue
                data = file.read_bytes()
            except OSError:
                continue
            if b"\0" in data[:8192]:
                continue
            for n, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
                if rx.search(line):
                    text = line.strip()
                    hits.append(f"{self.show(file)}:{n}: {text[:200]}")
                    if len(hits) >= max_results:
                        return "\n".join(hits) + f"\n…[stopped at {max_results} matches]"
        return "\n".join(hits) if hits else f"no matches for {pattern!r}"

    def file_info(self, path: str) -> dict:
        """Facts about a file or folder: kind, size, modification time, permissions, line count.

        Args:
            path: the file or folder, relative to the working folder.
        """
        target = self.resolve(path)
        st = target.stat()
        info = {
            "path": self.show(target),
            "kind": _special_kind(st.st_mode).removeprefix("a ") or ("folder" if target.is_dir() else "file"),
            "size_bytes": st.st_size,
            "size": _size(st.st_size),
            "modified": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(st.st_mtime)),
            "permissions": stat.filemode(st.st_mode),
        }
        if target.is_file() and st.st_size <= SEARCH_FILE_LIMIT:
            data = target.read_bytes()
            info["binary"] = b"\0" in data[:8192]
            if not info["binary"]:
                info["lines"] = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
        elif target.is_dir():
            info["entries"] = sum(1 for _ in target.iterdir())
        return info


def _walk(top: Path):
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if not path.is_symlink():  # as grep -r: links below the top are not followed
                yield path


def _special_kind(mode: int) -> str:
    """What a path that is neither a regular file nor a folder is, in words; "" for those two."""
    for test, kind in ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return kind
    return ""


def _has_escaping_link(path: Path, root: Path) -> bool:
    current = path
    while current != current.parent:
        if current.is_symlink():
            return True
        current = current.parent
    return False


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"
