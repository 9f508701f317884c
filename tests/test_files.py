"""The one file hasher and the one atomic writer (issue 12, item 19)."""
import os
import threading

import pytest

from mheval import files


def test_cached_hash_reads_a_file_once_until_it_changes(tmp_path, monkeypatch):
    """Guards item 19 / item 1: weight files are hashed once, not on every run, yet any change is noticed."""
    monkeypatch.setenv("MHEVAL_CACHE", str(tmp_path / "cache"))
    reads = []
    real = files.sha256_file
    monkeypatch.setattr(files, "sha256_file", lambda path: reads.append(path) or real(path))
    weights = tmp_path / "model.bin"
    weights.write_bytes(b"first version")
    first = files.sha256_file_cached(weights)
    assert first == real(weights) and files.sha256_file_cached(weights) == first and len(reads) == 1
    stamp = weights.stat()
    weights.write_bytes(b"other version")  # same size; put the old mtime back: the ctime still moves
    os.utime(weights, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert files.sha256_file_cached(weights) == real(weights) != first and len(reads) == 2


def test_cached_hash_works_without_a_writable_cache(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    monkeypatch.setenv("MHEVAL_CACHE", str(blocker / "cache"))
    target = tmp_path / "f"
    target.write_bytes(b"abc")
    assert files.sha256_file_cached(target) == files.sha256_file(target)


def test_atomic_writer_leaves_the_old_file_when_writing_fails_and_no_temporary_files(tmp_path):
    path = tmp_path / "out" / "results.json"
    files.write_json_atomic(path, {"a": 1})

    def explode(handle):
        handle.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        files.write_atomically(path, explode)
    assert path.read_text().replace(" ", "").replace("\n", "") == '{"a":1}'
    assert os.listdir(path.parent) == ["results.json"]


def test_concurrent_atomic_writers_never_tear_a_file(tmp_path):
    path = tmp_path / "shared.bin"
    payloads = [bytes([n]) * 200_000 for n in range(8)]
    threads = [threading.Thread(target=files.write_bytes_atomic, args=(path, data)) for data in payloads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert path.read_bytes() in payloads and os.listdir(tmp_path) == ["shared.bin"]
