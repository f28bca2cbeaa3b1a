"""The app under load, and the live view's frame rate, printed as one report.

    python bench/bench_app.py [--clients 8] [--requests 25] [--live-seconds 15]

Launches the real app on loopback, serving the shapes model (the fake camera shows
synthetic shapes, so the Live view has a label to wait for); N gradio_client users each send M classify requests
(p50/p95 latency, throughput); then headless Chromium streams a fake camera clip into the
Live view and the frames the server processed per second are read back.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]


class LiveRun(NamedTuple):
    """What ``live_frame_rates`` measured, and on what."""

    #: Processed frames/s as the Live view reported them, one reading a second.
    readings: list[float]
    #: The fake camera clip's frame size.
    width: int
    height: int
    #: The app's ``stream_every`` for its streaming events (seconds), from its /config.
    stream_every: list[float]


def stream_every(url: str) -> list[float]:
    """The ``stream_every`` of the app's streaming events, as the app serves them in /config."""
    import json
    import urllib.request

    with urllib.request.urlopen(f"{url.rstrip('/')}/config", timeout=30) as response:
        config = json.load(response)
    return sorted({d["stream_every"] for d in config["dependencies"]
                   if d.get("stream_every") is not None and any(t[1] == "stream" for t in d["targets"])})


def load_report(url: str, clients: int, requests: int) -> None:
    from gradio_client import Client, handle_file
    from timing import concurrent_seconds

    example = REPO / "docs" / "examples" / "star.png"
    latencies: list[float] = []
    errors: list[BaseException] = []

    def user() -> None:
        client = Client(url, verbose=False)
        for _ in range(requests):
            start = time.perf_counter()
            try:
                client.predict(handle_file(str(example)), 3, api_name="/classify")
                latencies.append(time.perf_counter() - start)
            except BaseException as error:  # counted in the report
                errors.append(error)

    wall = concurrent_seconds([user] * clients)
    ms = sorted(x * 1000 for x in latencies)
    print(f"load: {clients} clients x {requests} classify requests over HTTP (gradio_client), {example.name}")
    print(f"  ok {len(ms)}, errors {len(errors)}")
    print(f"  latency p50 {statistics.median(ms):7.1f} ms   p95 {ms[int(0.95 * (len(ms) - 1))]:7.1f} ms"
          f"   max {ms[-1]:7.1f} ms")
    print(f"  throughput {len(ms) / wall:7.1f} requests/s")


def live_frame_rates(url: str, seconds: float, label: str = "star") -> LiveRun:
    """Stream a fake camera clip into the app's Live view for ``seconds``; once ``label``
    shows, read the processed frames/s it reports every second."""
    import re

    from playwright.sync_api import sync_playwright

    from browser import launch_chromium, shape_clip, start_live_view

    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        clip = shape_clip(Path(tmp) / "clip.y4m", "star", size=480)
        with open(clip, "rb") as header:  # YUV4MPEG2 W<width> H<height> ...
            fields = {f[0]: f[1:] for f in header.readline().decode().split()[1:]}
        browser = launch_chromium(playwright, fake_video=clip)
        page = browser.new_page(viewport={"width": 1300, "height": 1000})
        page.goto(url)
        start_live_view(page, label)
        readings = []
        end = time.time() + seconds
        while time.time() < end:
            time.sleep(1.0)
            match = re.search(r"([\d.]+)\s*frames/s", page.inner_text("#live-fps"))
            if match:
                readings.append(float(match.group(1)))
        browser.close()
    return LiveRun(readings, int(fields["W"]), int(fields["H"]), stream_every(url))


def live_summary(run: LiveRun) -> str:
    """'processed frames/s: median .., min .. over N readings' (or none read)."""
    if not run.readings:
        return "processed frames/s: no reading"
    return (f"processed frames/s: median {statistics.median(run.readings):.1f}, min {min(run.readings):.1f} "
            f"over {len(run.readings)} readings (one a second)")


def live_report(url: str, seconds: float) -> None:
    run = live_frame_rates(url, seconds)
    every = ", ".join(f"{s:g}" for s in run.stream_every) or "?"
    print(f"\nlive view: {run.width}x{run.height} fake camera in headless Chromium, stream_every={every} s, "
          f"{seconds:g} s")
    print(f"  {live_summary(run)} (target >= 10)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=25)
    parser.add_argument("--live-seconds", type=float, default=15)
    args = parser.parse_args()

    from vision.defaults import SHAPES_MODEL

    from app_server import app_process

    with tempfile.TemporaryDirectory() as tmp, app_process(Path(tmp)) as url:
        print(f"app.py on the shapes model ({SHAPES_MODEL})")
        load_report(url, args.clients, args.requests)
        live_report(url, args.live_seconds)


if __name__ == "__main__":
    main()
