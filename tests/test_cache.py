"""The conversion cache heals: damaged entries are rebuilt, leftovers removed, bad folders
refused before any work, and every error names the path. A tiny model stands in for the
25-second SmolLM2 conversion; the code path is the same (catalog.smollm2_folder uses it)."""

import errno
import json
import os
import subprocess
import sys

import pytest

from lm_layers_explainer import cache, load_model
from lm_layers_explainer.cache import MANIFEST, CacheError, cached_folder


class Builder:
    """Writes tiny-gpt2 as a checkpoint folder; counts its calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, staging):
        self.calls += 1
        lm = load_model("tiny-gpt2")
        lm.model.save_pretrained(staging)
        lm.tokenizer.save_pretrained(staging)


@pytest.fixture
def entry(tmp_path):
    cache._VERIFIED.clear()  # as in a new process
    yield tmp_path / "cache" / "tiny-entry"
    cache._VERIFIED.clear()


def test_an_entry_is_built_once_with_a_manifest_of_sizes_and_digests(entry):
    build = Builder()
    assert cached_folder(entry, build, what="tiny") == entry
    assert cached_folder(entry, build, what="tiny") == entry
    assert build.calls == 1
    manifest = json.loads((entry / MANIFEST).read_text())["files"]
    weights = manifest["model.safetensors"]
    assert weights["size"] == (entry / "model.safetensors").stat().st_size
    assert weights["sha256"] == cache.sha256(entry / "model.safetensors")
    assert load_model(str(entry)).kind == "causal"
    assert not list(entry.parent.glob(".converting-*"))


def test_a_truncated_file_is_rebuilt_with_a_warning_naming_the_path(entry):
    build = Builder()
    cached_folder(entry, build, what="tiny")
    weights = entry / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.warns(UserWarning, match=rf"tiny: the cached copy in {entry} is damaged "
                      r"\(model.safetensors is 1000 bytes"):  # fmt: skip
        cached_folder(entry, build, what="tiny")
    assert build.calls == 2
    assert load_model(str(entry)).n_layers == 2


def test_a_same_size_corruption_is_found_by_its_digest_in_a_new_process(entry):
    build = Builder()
    cached_folder(entry, build, what="tiny")
    tokenizer = entry / "tokenizer.json"
    content = bytearray(tokenizer.read_bytes())
    content[10:20] = b"#" * 10  # the same size, no longer valid JSON
    tokenizer.write_bytes(bytes(content))
    assert cache.damage(entry, digests=False) is None  # sizes alone cannot tell
    cache._VERIFIED.clear()
    with pytest.warns(UserWarning, match="tokenizer.json does not have the SHA-256"):
        cached_folder(entry, build, what="tiny")
    assert build.calls == 2
    json.loads(tokenizer.read_text())


def test_an_entry_without_manifest_is_an_interrupted_conversion(entry):
    build = Builder()
    cached_folder(entry, build, what="tiny")
    (entry / MANIFEST).unlink()
    with pytest.warns(UserWarning, match="an interrupted or older conversion"):
        cached_folder(entry, build, what="tiny")
    assert build.calls == 2


def test_leftovers_of_killed_conversions_are_removed_and_live_ones_kept(entry):
    """A staging folder is live while a process holds its entry's lock: a folder named after a
    process that still runs (its PID reused) is a leftover all the same."""
    entry.parent.mkdir(parents=True)
    killed = entry.parent / ".converting-tiny-entry.abc"  # this very entry: nobody converts it
    (killed / "half").mkdir(parents=True)
    old_style = entry.parent / f".converting-{os.getppid()}-xyz"  # a live PID in its name
    old_style.mkdir()
    live = entry.parent / ".converting-other-entry.def"
    live.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from filelock import FileLock; "
         "lock = FileLock(sys.argv[1]); lock.acquire(); print('held', flush=True); "
         "time.sleep(60)", str(entry.parent / ".other-entry.lock")],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        cached_folder(entry, Builder(), what="tiny")
    finally:
        holder.kill()
        holder.wait()
    assert not killed.exists() and not old_style.exists() and live.exists()
    assert cache.remove_leftovers(entry.parent) == [live]  # its process is gone now


@pytest.mark.parametrize(
    ("manifest", "why"),
    [
        ("[1, 2]", "no readable"),
        ('{"files": []}', "does not list the files"),
        ('{"files": {}}', "does not list the files"),
        ('{"files": {"model.safetensors": {"size": "12"}}}', "does not list the files"),
        ('{"files": {"../model.safetensors": {"size": 1, "sha256": "%s"}}}' % ("0" * 64),
         "does not list the files"),
    ],
)  # fmt: skip
def test_a_manifest_of_the_wrong_shape_is_damage_and_is_healed(entry, manifest, why):
    build = Builder()
    cached_folder(entry, build, what="tiny")
    (entry / "model.safetensors").write_bytes(b"truncated")
    (entry / MANIFEST).write_text(manifest)
    with pytest.warns(UserWarning, match=why):
        cached_folder(entry, build, what="tiny")
    assert build.calls == 2 and cache.damage(entry, digests=True) is None


def test_an_entry_replaced_by_a_file_or_holding_an_unlisted_file_is_healed(entry):
    build = Builder()
    entry.parent.mkdir(parents=True)
    entry.write_text("not a folder")
    with pytest.warns(UserWarning, match="it is not a folder"):
        cached_folder(entry, build, what="tiny")
    (entry / "pytorch_model.bin").write_bytes(b"slipped in")
    with pytest.warns(UserWarning, match="pytorch_model.bin is not in"):
        cached_folder(entry, build, what="tiny")
    assert build.calls == 2 and not (entry / "pytorch_model.bin").exists()


_BUILD_IN_A_PROCESS = r"""
import sys, time
from pathlib import Path
from lm_layers_explainer.cache import cached_folder

def build(staging):
    with open(sys.argv[2], "a") as log:
        log.write("built\n")
    time.sleep(2)  # long enough for the other process to arrive while this one converts
    (staging / "weights.bin").write_bytes(b"weights")

print(cached_folder(Path(sys.argv[1]), build, what="tiny"))
"""


def test_two_processes_converting_one_entry_build_it_once(entry, tmp_path):
    log = tmp_path / "builds.log"
    script = tmp_path / "build.py"
    script.write_text(_BUILD_IN_A_PROCESS)
    runs = [
        subprocess.Popen([sys.executable, str(script), str(entry), str(log)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]  # fmt: skip
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert log.read_text() == "built\n"
    assert (entry / "weights.bin").read_bytes() == b"weights"
    assert not list(entry.parent.glob(".converting-*"))


def test_a_full_disk_is_refused_before_converting_with_the_path(entry, monkeypatch):
    build = Builder()
    usage = cache.shutil.disk_usage
    monkeypatch.setattr(cache.shutil, "disk_usage",
                        lambda path: usage(path)._replace(free=10_000_000))  # fmt: skip
    with pytest.raises(CacheError, match=rf"{entry.parent} has 10 MB free .* about 600 MB"):
        cached_folder(entry, build, what="tiny", size_hint=600_000_000)
    assert build.calls == 0


def test_a_read_only_folder_is_refused_before_converting_with_the_path(entry, monkeypatch):
    build = Builder()
    entry.parent.mkdir(parents=True)
    monkeypatch.setattr(cache.os, "access", lambda path, mode: False)  # root writes anyway
    with pytest.raises(CacheError, match=rf"cache folder {entry.parent} is not writable"):
        cached_folder(entry, build, what="tiny")
    assert build.calls == 0


def test_a_cache_path_that_cannot_exist_names_itself(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(CacheError, match=rf"cannot create the cache folder {blocker}"):
        cached_folder(blocker / "entry", Builder(), what="tiny")


def test_a_write_that_fails_midway_names_the_folder_leaves_nothing_and_retries(entry):
    def full_disk(staging):
        (staging / "model.safetensors").write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(CacheError, match=rf"could not write the cached copy in {entry.parent}"):
        cached_folder(entry, full_disk, what="tiny")
    assert not entry.exists() and not list(entry.parent.glob(".converting-*"))
    build = Builder()
    cached_folder(entry, build, what="tiny")
    assert build.calls == 1
