"""The app's cache of loaded models is bounded in bytes and drops what was saved over."""

from __future__ import annotations

import os
import shutil

import vision.ui.cache as cache
from vision.ui.disk import folder_bytes


def test_the_model_cache_keeps_within_its_bytes_least_recently_used_first(tiny_bundle, tmp_path, monkeypatch):
    copies = [shutil.copytree(tiny_bundle, tmp_path / name) for name in "abc"]
    size = folder_bytes(copies[0])
    monkeypatch.setattr(cache, "_CACHE", cache.new_cache(2 * size + 1))
    for folder in copies:
        cache.get_bundle(folder)
    assert cache.cached_bytes() == 2 * size
    assert {key[1] for key in cache._CACHE} == {str(copies[1].resolve()), str(copies[2].resolve())}
    # Saved over (a new modification time): the old entry goes when the new one is loaded, and
    # the other model stays.
    old = set(cache._CACHE)
    stat = copies[2].stat()
    os.utime(copies[2], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    cache.get_bundle(copies[2])
    kept = set(cache._CACHE)
    assert len(kept) == 2 and len(kept - old) == 1 and ("bundle", str(copies[1].resolve())) in {k[:2] for k in kept}
