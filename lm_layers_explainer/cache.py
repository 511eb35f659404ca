"""Cached conversions (SmolLM2's GGUF -> safetensors): built once, checked, healed.

>>> folder = cached_folder(target, build=convert, what="SmolLM2", size_hint=550_000_000)

An entry is a folder written by ``build`` into a staging folder next to it and renamed into
place only when complete, with a manifest of every file's size and SHA-256 digest. On use:

- sizes are checked every time, digests once per process (hashing 520 MB takes about 0.4 s);
- a damaged entry (missing file, wrong size or digest, no manifest) is rebuilt, with a
  warning that says why;
- one conversion of an entry at a time, across threads and processes (a file lock next to
  the entry, ``.<entry>.lock``); a process that waited uses the entry the other one built;
- staging folders left by killed conversions are removed (no process holds their entry's
  lock);
- a manifest of the wrong shape, a file it does not list, or an entry that is not a folder
  count as damage;
- before building, the folder must be writable and have room for ``size_hint`` bytes;
- every error names the path.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock, Timeout

MANIFEST = "lm-layers-explainer-manifest.json"
STAGING_PREFIX = ".converting-"


def cache_dir() -> Path:
    """Where converted checkpoints are kept: ``$LM_LAYERS_EXPLAINER_CACHE``, else
    ``$XDG_CACHE_HOME/lm_layers_explainer``, else ``~/.cache/lm_layers_explainer``."""
    explicit = os.environ.get("LM_LAYERS_EXPLAINER_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "lm_layers_explainer"


class CacheError(OSError):
    """The cache cannot hold or give back an entry (read-only, full, damaged for good)."""


_VERIFIED: set[tuple[str, float]] = set()
"""(entry path, manifest mtime) whose digests this process has checked."""


def cached_folder(
    target: Path, build: Callable[[Path], None], *, what: str, size_hint: int = 0
) -> Path:
    """``target``, built by ``build(staging_folder)`` if it is missing or damaged."""
    if damage(target) is None:
        return target
    _make_parent(target.parent, what)
    check_writable(target.parent, what=what)
    with _entry_lock(target):  # one conversion at a time, across threads and processes
        problem = damage(target)  # another thread or process may have built it meanwhile
        if problem is None:
            return target
        if problem != "missing":
            warnings.warn(
                f"{what}: the cached copy in {target} is damaged ({problem}); rebuilding it",
                stacklevel=3,
            )
            _remove(target)
        _build(target, build, what=what, size_hint=size_hint)
    return target


def damage(target: Path, *, digests: bool | None = None) -> str | None:
    """None if ``target`` holds what its manifest lists; else what is wrong ("missing" if
    there is no entry). ``digests``: check SHA-256 too (default: once per process)."""
    if not target.exists() and not target.is_symlink():
        return "missing"
    if not target.is_dir():
        return "it is not a folder"
    manifest_path = target / MANIFEST
    try:
        files = json.loads(manifest_path.read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"no readable {MANIFEST}: an interrupted or older conversion"
    if not _well_formed(files):
        return f"{MANIFEST} does not list the files with their size and sha256"
    for path in target.iterdir():
        if path.name != MANIFEST and path.name not in files:
            return f"{path.name} is not in {MANIFEST}"
    for name, expected in files.items():
        path = target / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != expected["size"]:
            return f"{name} is {path.stat().st_size} bytes, {expected['size']} were written"
    key = (str(target), manifest_path.stat().st_mtime)
    if digests is None:
        digests = key not in _VERIFIED
    if digests:
        for name, expected in files.items():
            if sha256(target / name) != expected["sha256"]:
                return f"{name} does not have the SHA-256 recorded when it was written"
        _VERIFIED.add(key)
    return None


def _well_formed(files) -> bool:
    """A manifest's ``files``: at least one plain file name -> {"size": int, "sha256": hex}."""
    return (
        isinstance(files, dict)
        and len(files) > 0
        and all(
            isinstance(name, str)
            and name == Path(name).name
            and name not in {"", ".", "..", MANIFEST}
            and isinstance(entry, dict)
            and type(entry.get("size")) is int
            and entry["size"] >= 0
            and isinstance(entry.get("sha256"), str)
            and len(entry["sha256"]) == 64
            for name, entry in files.items()
        )
    )


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _make_parent(parent: Path, what: str) -> None:
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CacheError(f"{what}: cannot create the cache folder {parent} ({error})") from error


def _lock_path(parent: Path, entry_name: str) -> Path:
    return parent / f".{entry_name}.lock"


def _entry_lock(target: Path) -> FileLock:
    """The lock one conversion of ``target`` holds (threads and processes alike)."""
    return FileLock(_lock_path(target.parent, target.name))


def _build(target: Path, build, *, what: str, size_hint: int) -> None:
    """Build ``target`` in a staging folder, then rename it into place (its lock held)."""
    parent = target.parent
    remove_leftovers(parent, building=target.name)
    check_room(parent, size_hint, what=what)
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{target.name}.", dir=parent))
    try:
        try:
            build(staging)
            _write_manifest(staging)
        except OSError as error:
            raise CacheError(
                f"{what}: could not write the cached copy in {parent} ({error})"
            ) from error
        staging.chmod(0o755)  # mkdtemp's folder is the owner's only; an entry is for all
        staging.rename(target)  # atomic: a reader never sees a half-written entry
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_manifest(folder: Path) -> None:
    files = {
        path.name: {"size": path.stat().st_size, "sha256": sha256(path)}
        for path in sorted(folder.iterdir())
        if path.is_file()
    }
    (folder / MANIFEST).write_text(json.dumps({"files": files}, indent=1))


def check_writable(folder: Path, *, what: str) -> None:
    """Refuse, before any work, a cache folder that is read-only."""
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CacheError(
            f"{what}: the cache folder {folder} is not writable; set LM_LAYERS_EXPLAINER_CACHE "
            "to a writable folder"
        )


def check_room(folder: Path, size_hint: int, *, what: str) -> None:
    """Refuse, before any work, a cache folder that is read-only or too full."""
    check_writable(folder, what=what)
    free = shutil.disk_usage(folder).free
    if free < size_hint:
        raise CacheError(
            f"{what}: the cache folder {folder} has {free / 1e6:.0f} MB free and the copy "
            f"needs about {size_hint / 1e6:.0f} MB; free some space or set "
            "LM_LAYERS_EXPLAINER_CACHE to another folder"
        )


def remove_leftovers(folder: Path, *, building: str | None = None) -> list[Path]:
    """Remove staging folders whose conversion no longer runs; return them.

    A conversion holds its entry's lock while its staging folder exists, so a staging folder
    whose lock can be taken is a leftover (``building``: the entry whose lock this process
    holds, whose staging folders are all leftovers)."""
    removed = []
    for staging in folder.glob(f"{STAGING_PREFIX}*"):
        entry_name = staging.name[len(STAGING_PREFIX) :].rsplit(".", 1)[0]
        if entry_name != building:
            try:
                with FileLock(_lock_path(folder, entry_name), timeout=0):
                    pass
            except Timeout:
                continue  # another thread or process is converting right now
        shutil.rmtree(staging, ignore_errors=True)
        removed.append(staging)
    return removed


def _remove(target: Path) -> None:
    try:
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink()
    except OSError as error:
        raise CacheError(f"cannot remove the damaged cache entry {target} ({error})") from error
