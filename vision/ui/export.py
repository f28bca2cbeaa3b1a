"""The Export view: TF.js, TFLite or SavedModel of the active model, as a .zip and, for
TF.js, a link that opens it in the client-side page.

Each export gets an unguessable id; it is served (at ``/exports/<id>/``) only while the
session that made it lives, and removed with it and when the app stops. Its .zip is written
into Gradio's cache (``SessionRegistry.archive_folder``) and removed with it too.
"""

from __future__ import annotations

import shutil

import gradio as gr

from vision.export.formats import export
from vision.export.webpage import tfjs_installed
from vision.ui.cache import get_bundle
from vision.ui.context import Context
from vision.ui.errors import user_errors


class ExportView:
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
            result = export(bundle, fmt, out, quantize=quantization)
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
                 f"max |Δp| {result.max_abs_diff:.1e}, top-1 agreement {result.top1_agreement:.0%}."]
        if fmt == "tfjs" and tfjs_installed(self.ctx.config.web_dir):
            lines.append(f"[Open it in the browser page](/web/?model=/exports/{export_id}) — it runs client-side "
                         "(this link works while this session is open).")
        elif fmt == "tfjs":
            lines.append("This server has no TF.js install for the /web page (`npm ci` in web/); "
                         "`python -m vision export … --web-site DIR` builds a static site instead.")
        return archive, "\n\n".join(lines)

