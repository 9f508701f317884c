"""Weight-file hashing on re-runs: `sha256_file_cached` reads a file once, then answers from its size and times.

    .venv/bin/python benchmarks/bench_file_hash.py [--megabytes 512]

Writes a file of random bytes the size of a small checkpoint into a temporary directory (with its own hash cache),
then times the first hash (reads the file), a second one (the cache: a stat and one SQLite lookup, as every re-run
pays per weight file), and a hash after the file was rewritten (read again). Wall-clock, this machine, this run.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def timed(function, *args) -> tuple[float, str]:
    started = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megabytes", type=int, default=512)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MHEVAL_CACHE"] = str(Path(tmp) / "cache")
        from mheval.files import sha256_file_cached

        weights = Path(tmp) / "weights.bin"
        weights.write_bytes(os.urandom(args.megabytes << 20))
        first, digest = timed(sha256_file_cached, weights)
        again, cached = timed(sha256_file_cached, weights)
        assert cached == digest
        with open(weights, "r+b") as handle:
            handle.write(b"\0" * 16)
        changed, new = timed(sha256_file_cached, weights)
        assert new != digest
    print(f"{args.megabytes} MB weight file: first hash {first:.2f} s, cached {again * 1000:.1f} ms "
          f"({first / again:.0f}x faster), after a rewrite {changed:.2f} s (read again)")


if __name__ == "__main__":
    main()
