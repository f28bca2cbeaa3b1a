"""The app under load, and the live view's frame rate, printed as one report.

    python bench/bench_app.py [--clients 8] [--requests 25] [--live-seconds 15]

Launches the real app on loopback; N gradio_client users each send M classify requests
(p50/p95 latency, throughput); then headless Chromium streams a fake camera clip into the
Live view and the frames the server processed per second are read back.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]



def load_report(url: str, clients: int, requests: int) -> None:
    from gradio_client import Client, handle_file

    example = str(REPO / "docs" / "examples" / "star.png")
    latencies: list[float] = []
    errors: list[BaseException] = []

    def user() -> None:
        client = Client(url, verbose=False)
        for _ in range(requests):
            start = time.perf_counter()
            try:
                client.predict(handle_file(example), 3, api_name="/classify")
                latencies.append(time.perf_counter() - start)
            except BaseException as error:  # counted in the report
                errors.append(error)

    threads = [threading.Thread(target=user) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    ms = sorted(x * 1000 for x in latencies)
    print(f"load: {clients} clients x {requests} classify requests over HTTP (gradio_client)")
    print(f"  ok {len(ms)}, errors {len(errors)}")
    print(f"  latency p50 {statistics.median(ms):7.1f} ms   p95 {ms[int(0.95 * (len(ms) - 1))]:7.1f} ms"
          f"   max {ms[-1]:7.1f} ms")
    print(f"  throughput {len(ms) / wall:7.1f} requests/s")


def live_frame_rates(url: str, seconds: float, label: str = "star") -> list[float]:
    """Stream a fake camera clip into the app's Live view for ``seconds``; once ``label``
    shows, read the processed frames/s it reports every second."""
    import re

    from playwright.sync_api import sync_playwright

    from browser import launch_chromium, shape_clip, start_live_view

    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        clip = shape_clip(Path(tmp) / "clip.y4m", "star", size=480)
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
    return readings


def live_report(url: str, seconds: float) -> None:
    readings = live_frame_rates(url, seconds)
    print(f"\nlive view: 640x480 fake camera in headless Chromium, stream_every=0.08 s, {seconds:.0f} s")
    print(f"  processed frames/s: median {statistics.median(readings):.1f}, min {min(readings):.1f} "
          f"(target >= 10)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=25)
    parser.add_argument("--live-seconds", type=float, default=15)
    args = parser.parse_args()

    import shutil

    from app_server import free_port, running

    # The server runs in its own process, as it would in production: the load clients'
    # threads must not share its interpreter lock.
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp) / "models"
        shutil.copytree(REPO / "models" / "shapes", models / "shapes")
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        env = {**os.environ, "VISION_MODELS_DIR": str(models), "VISION_MODEL": str(models / "shapes")}
        with running([sys.executable, str(REPO / "app.py"), "--port", str(port)], url, timeout=240, env=env):
            load_report(url, args.clients, args.requests)
            live_report(url, args.live_seconds)


if __name__ == "__main__":
    main()
