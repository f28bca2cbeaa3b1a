"""Everything that yields pixels and labels: safe decoding and the one preprocessing, archives,
datasets, webcam samples, synthetic shapes and the photos that ship inside installed packages.

Names load on first use (``lazy_loader``), so importing one module here does not import the
others, and TensorFlow is paid for only by what needs it.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "images": ["MAX_PIXELS", "Preprocessing", "load_image", "preprocess", "resized"],
        "archives": ["extract_zip"],
        "datasets": ["LabelledDataset", "Split", "load_dataset", "load_folder", "load_zip", "make_pipeline",
                     "summarize"],
        "samples": ["SampleCollection"],
        "synthetic": ["make_shapes", "write_shapes"],
        "photos": ["example_photos", "probe_photos", "background_photos", "with_crops", "photographed_at"],
    },
)
