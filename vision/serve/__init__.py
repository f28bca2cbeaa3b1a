"""Protocols the app's models are served by: TF Serving's REST API (``rest``), the per-client
identity every limit keys on (``client``), streamed request bodies (``bodies``), the limits
(``limits``) and the model lookup the UI hands in (``models``). Nothing here imports the UI."""
