"""The Export view: TF.js, TFLite, ONNX or SavedModel of the active model, as a .zip and, for
TF.js, a link that opens it in the client-side page; and a table of every export the session
has made, each checked against Keras when it was made (agreement, size, speed on this server:
the ``parity.json`` in each export folder, ``vision.export.parity``).

Each export gets an unguessable id; it is served (at ``/exports/<id>/``) only while the
session that made it lives, and removed with it and when the app stops. Its .zip is written
into Gradio's cache (``SessionRegistry.archive_folder``) and removed with it too.
"""

from __future__ import annotations

import json
import shutil
from typing import Any

import gradio as gr

from vision.bundle.store import Bundle
from vision.data.datasets import Split, load_folder
from vision.errors import DatasetError
from vision.export.formats import export
from vision.export.int8 import FULL_INTEGER
from vision.export.parity import COLUMNS, PARITY_FILE, table_row
from vision.serve.webpage import tfjs_installed
from vision.ui.cache import get_bundle
from vision.ui.context import Context
from vision.ui.errors import user_errors
from vision.ui.session import Session


class ExportView:
    #: The table's columns: the model, then ``vision.export.parity.COLUMNS``.
    TABLE_HEADERS = ["model", *COLUMNS]

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    @user_errors
    def export(self, fmt: str, quantize: str, request: gr.Request,
               progress: gr.Progress = gr.Progress()) -> tuple[str, str]:
        session, folder = self.ctx.active_model(request)
        bundle = get_bundle(folder)
        quantization = None if quantize in ("", "none", None) else quantize
        export_id, out = self.ctx.sessions.new_export(session)
        archive_folder = self.ctx.sessions.archive_folder(export_id)
        progress(0.1, desc=f"exporting to {fmt}")
        try:
            calibration = _session_images(session, bundle) if quantization in FULL_INTEGER else None
            result = export(bundle, fmt, out, quantize=quantization, calibration=calibration)
            progress(0.9, desc="zipping")
            archive = shutil.make_archive(str(archive_folder / f"{bundle.name}-{fmt}"), "zip", result.path)
        except BaseException:
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(archive_folder, ignore_errors=True)
            raise
        session.exports[export_id] = out
        checked_with = result.metadata["verification"]["checked_with"]
        lines = [f"Exported **{bundle.name}** as {fmt} ({result.size_bytes / 1e6:.2f} MB, "
                 f"quantization {quantization or 'none'}).",
                 f"Checked against Keras on {result.checked_images} images ({checked_with}): "
                 f"max |Δp| {result.parity['max_abs_dp']:.1e}, top-1 agreement {result.top1_agreement:.0%}."]
        if result.parity.get("latency_ms") is not None:
            lines.append(f"On this server: {result.parity['latency_ms']:.1f} ms per image "
                         f"({result.parity['latency_runtime']}).")
        full_integer = result.metadata.get("full_integer")
        if full_integer:
            tensor = full_integer["input"]
            feed = (f"{tensor['dtype']} input, {tensor['from_pixels']} (resized to the model's size)"
                    if tensor["dtype"] != "float32" else "float32 input and output, int8 inside")
            lines.append(f"Full integer ({full_integer['method'].upper()}, calibrated on "
                         f"{full_integer['calibration']}): {feed}.")
        if fmt == "tfjs" and tfjs_installed(self.ctx.config.web_dir):
            lines.append(f"[Open it in the browser page](/web/?model=/exports/{export_id}) — it runs client-side "
                         "(this link works while this session is open).")
        elif fmt == "tfjs":
            lines.append("This server has no TF.js install for the /web page (`npm ci` in web/); "
                         "`python -m vision export … --web-site DIR` builds a static site instead.")
        return archive, "\n\n".join(lines)

    @user_errors
    def table(self, request: gr.Request) -> list[list[Any]]:
        """One ``TABLE_HEADERS`` row per model, format and quantization this session exported
        (the newest of each), read from the exports' own ``parity.json``."""
        rows: dict[tuple[Any, ...], list[Any]] = {}
        for folder in list(self.ctx.session(request).exports.values()):  # oldest first
            try:
                record = json.loads((folder / PARITY_FILE).read_text())
                name = json.loads((folder / "metadata.json").read_text())["name"]
            except (OSError, ValueError, KeyError):  # removed meanwhile (the session's export cap)
                continue
            rows[(name, record["format"], record["quantization"])] = [name, *table_row(record)]
        return list(rows.values())


def _session_images(session: Session, bundle: Bundle) -> Split | None:
    """The session's own samples, to calibrate a full-integer export on, when they are the
    model's classes (a model trained here from them); else None, and package photos are used.
    Never the folder a bundle's ``vision.json`` names: a pulled or imported bundle's record is
    data, not a path to read."""
    if sorted(session.samples.classes()) != sorted(bundle.labels):
        return None
    try:
        return load_folder(session.samples.root).everything()
    except DatasetError:  # too few samples a class to split: package photos serve
        return None
