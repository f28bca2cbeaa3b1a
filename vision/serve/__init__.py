"""Protocols the app's models are served by: TF Serving's REST API (``rest``), the per-client
identity every limit keys on (``client``), streamed request bodies (``bodies``), the limits
(``limits``), the model lookup the UI hands in (``models``) and the static web page's set-up
where no ``make`` ran (``webpage``), and a TensorBoard on loopback for the training logs
(``tensorboard``). Nothing here imports the UI."""
