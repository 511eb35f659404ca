"""Cached conversions (SmolLM2's GGUF -> safetensors): built once, checked, healed.

>>> folder = cached_folder(target, build=convert, what="SmolLM2", size_hint=550_000_000)

An entry is a folder written by ``build`` into a staging folder next to it and renamed into
place only when complete, with a manifest of every file's size and SHA-256 digest. On use:

- sizes are checked every time, digests once per process (hashing 520 MB takes about 0.4 s);
- a damaged entry (missing file, wrong size or digest, no manifest) is rebuilt, with a
  warning that says why;
- staging folders left by killed conversions are removed (their process is gone);
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

MANIFEST = "lm-layers-explainer-manifest.json"
STAGING_PREFIX = ".converting-"


class CacheError(OSError):
    """The cache cannot hold or give back an entry (read-only, full, damaged for good)."""


_VERIFIED: set[tuple[str, float]] = set()
"""(entry path, manifest mtime) whose digests this process has checked."""


def cached_folder(
    target: Path, build: Callable[[Path], None], *, what: str, size_hint: int = 0
) -> Path:
    """``target``, built by ``build(staging_folder)`` if it is missing or damaged."""
    problem = damage(target)
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
    if not target.exists():
        return "missing"
    manifest_path = target / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"no readable {MANIFEST}: an interrupted or older conversion"
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


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _build(target: Path, build, *, what: str, size_hint: int) -> None:
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CacheError(f"{what}: cannot create the cache folder {parent} ({error})") from error
    remove_leftovers(parent)
    check_room(parent, size_hint, what=what)
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=parent))
    try:
        try:
            build(staging)
            _write_manifest(staging)
        except OSError as error:
            raise CacheError(
                f"{what}: could not write the cached copy in {parent} ({error})"
            ) from error
        try:
            staging.rename(target)  # atomic: a reader never sees a half-written entry
        except OSError:
            if damage(target) is not None:  # not a concurrent process that finished first
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_manifest(folder: Path) -> None:
    files = {
        path.name: {"size": path.stat().st_size, "sha256": sha256(path)}
        for path in sorted(folder.iterdir())
        if path.is_file()
    }
    (folder / MANIFEST).write_text(json.dumps({"files": files}, indent=1))


def check_room(folder: Path, size_hint: int, *, what: str) -> None:
    """Refuse, before any work, a cache folder that is read-only or too full."""
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CacheError(
            f"{what}: the cache folder {folder} is not writable; set LM_LAYERS_EXPLAINER_CACHE "
            "to a writable folder"
        )
    free = shutil.disk_usage(folder).free
    if free < size_hint:
        raise CacheError(
            f"{what}: the cache folder {folder} has {free / 1e6:.0f} MB free and the copy "
            f"needs about {size_hint / 1e6:.0f} MB; free some space or set "
            "LM_LAYERS_EXPLAINER_CACHE to another folder"
        )


def remove_leftovers(folder: Path) -> list[Path]:
    """Remove staging folders whose conversion process no longer runs; return them."""
    removed = []
    for staging in folder.glob(f"{STAGING_PREFIX}*"):
        pid = staging.name[len(STAGING_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and _running(int(pid)) and int(pid) != os.getpid():
            continue  # another process is converting right now
        shutil.rmtree(staging, ignore_errors=True)
        removed.append(staging)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(target: Path) -> None:
    try:
        shutil.rmtree(target)
    except OSError as error:
        raise CacheError(f"cannot remove the damaged cache entry {target} ({error})") from error
