"""How fast, and at what memory cost, the public app refuses a decompression bomb.

    python bench/bench_guard.py [--repeats 5] [--concurrent 4]

Starts the app in public mode on loopback (in this process, so its memory is this
process's), then uploads a small 12000x12000 greyscale PNG to /classify: each refusal's
round-trip time, and the growth of the process's peak resident memory (VmHWM) over all of
them, including ``--concurrent`` uploads at once. Targets: < 0.5 s, < 50 MB.
"""

from __future__ import annotations

import argparse
import os
import statistics
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--concurrent", type=int, default=4)
    args = parser.parse_args()

    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError
    from upload_files import huge_grey_png

    from app_server import launch_app

    tmp = Path(tempfile.mkdtemp(prefix="bench-guard-"))
    bomb = huge_grey_png(tmp / "huge.png")
    app, url = launch_app(tmp / "models", public=True)
    try:
        client = Client(url, verbose=False)
        client.predict(handle_file(str(REPO / "docs" / "examples" / "star.png")), 1, api_name="/classify")  # warm
        before = peak_rss_mb()
        times, messages = [], set()

        def refuse(visitor: Client = client) -> None:
            started = time.perf_counter()
            try:
                visitor.predict(handle_file(str(bomb)), 3, api_name="/classify")
                messages.add("ACCEPTED (bug)")
            except AppError as error:
                messages.add(str(error))
            times.append(time.perf_counter() - started)

        for _ in range(args.repeats):
            refuse()
        visitors = [Client(url, verbose=False) for _ in range(args.concurrent)]
        threads = [threading.Thread(target=refuse, args=(visitor,)) for visitor in visitors]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        growth = peak_rss_mb() - before
    finally:
        app.close()
    width, height, depth, colour = struct.unpack(">IIBB", bomb.read_bytes()[16:26])  # the IHDR chunk
    kind = "greyscale" if colour == 0 else f"colour type {colour}"
    print(f"bomb: {bomb.stat().st_size / 1e3:.0f} KB PNG, {width}x{height} {depth}-bit {kind}")
    print(f"answer: {' | '.join(sorted(messages))}")
    print(f"refusal round trip (client included), {len(times)} uploads ({len(visitors)} of them at once): "
          f"median {statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms (target < 500 ms)")
    print(f"peak resident memory growth: {growth:.1f} MB (target < 50 MB)")


if __name__ == "__main__":
    main()
