"""Classify throughput of the app against Gradio's own floor, side by side in one run.

    python bench/bench_throughput.py [--clients 8] [--requests 25] [--rounds 2]

Two servers run at once, each in its own process: ``app.py`` on the shapes model, and a no-op
Gradio app with the same classify event (the same upload input and top-k slider in, a Label and
a Markdown out, the same queue settings) whose handler returns at once. N gradio_client users
each send M classify calls to one, then to the other, alternating for ``rounds`` rounds so a
busier stretch of the machine falls on both. Prints requests/s, p50 and p95 for each and the
ratio (target: the app at >= 0.9x the floor).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

#: The no-op app: the app's classify event with nothing behind it.
NOOP_APP = '''
import sys
import gradio as gr
from vision.ui.layout import QUICK, UPLOAD, uploaded_file

with gr.Blocks() as demo:
    image = uploaded_file(gr.Image(sources=["upload"], **UPLOAD))
    top_k = gr.Slider(1, 10, value=3, step=1)
    label, latency = gr.Label(), gr.Markdown()
    gr.Button().click(lambda image, k: ({"star": 1.0}, "0 ms"), [image, top_k], [label, latency],
                      api_name="classify", **QUICK)
demo.queue(default_concurrency_limit=QUICK["concurrency_limit"])
demo.launch(server_name="127.0.0.1", server_port=int(sys.argv[1]), quiet=True)
'''


def load(url: str, clients: int, requests: int) -> tuple[list[float], float, int]:
    """(latencies in s, wall s, errors) of ``clients`` gradio_client users x ``requests`` classify calls."""
    from gradio_client import Client, handle_file
    from timing import concurrent_seconds

    example = REPO / "docs" / "examples" / "star.png"
    latencies: list[float] = []
    errors = [0]
    ready = [Client(url, verbose=False) for _ in range(clients)]  # connecting is not what is timed

    def user(client: object) -> None:
        for _ in range(requests):
            start = time.perf_counter()
            try:
                client.predict(handle_file(str(example)), 3, api_name="/classify")
                latencies.append(time.perf_counter() - start)
            except Exception:  # counted in the report
                errors[0] += 1

    wall = concurrent_seconds([lambda client=client: user(client) for client in ready])
    return latencies, wall, errors[0]


def warm_explainer(url: str) -> None:
    """Wait for the app's start-up work (it builds the Grad-CAM explainer in the background, for
    seconds of CPU): one explanation waits for it, so the timed calls do not share the cores."""
    from gradio_client import Client, handle_file

    Client(url, verbose=False).predict(handle_file(str(REPO / "docs" / "examples" / "star.png")), "gradcam", "",
                                       0.5, api_name="/explain")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=25)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    from timing import machine

    from app_server import app_process, free_port, running

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "noop.py").write_text(NOOP_APP)
        noop_port = free_port()
        noop_url = f"http://127.0.0.1:{noop_port}/"
        with app_process(Path(tmp)) as app_url, \
                running([sys.executable, str(Path(tmp) / "noop.py"), str(noop_port)], noop_url, timeout=120,
                        env={**os.environ, "PYTHONPATH": str(REPO)}):
            urls = {"app": app_url, "no-op Gradio": noop_url}
            results: dict[str, list[tuple[list[float], float, int]]] = {name: [] for name in urls}
            for name, url in urls.items():  # warm both: first calls convert and trace
                load(url, 2, 3)
            warm_explainer(urls["app"])
            for _ in range(args.rounds):
                for name, url in urls.items():
                    results[name].append(load(url, args.clients, args.requests))
            print(f"{machine()}\n{args.clients} clients x {args.requests} classify calls (gradio_client), "
                  f"{args.rounds} rounds alternating, shapes model")
            rate = {}
            for name, runs in results.items():
                ms = sorted(1000 * x for latencies, _, _ in runs for x in latencies)
                rate[name] = sum(len(latencies) for latencies, _, _ in runs) / sum(wall for _, wall, _ in runs)
                errors = sum(e for _, _, e in runs)
                print(f"  {name:<13} {rate[name]:6.1f} requests/s   p50 {statistics.median(ms):7.1f} ms   "
                      f"p95 {ms[int(0.95 * (len(ms) - 1))]:7.1f} ms   errors {errors}")
            ratio = rate["app"] / rate["no-op Gradio"]
            print(f"  app / no-op: {ratio:.2f}x   target >= 0.9x   {'PASS' if ratio >= 0.9 else 'FAIL'}")


if __name__ == "__main__":
    main()
