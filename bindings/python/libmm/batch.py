"""Batch work over many images, on a dask.distributed cluster or in this process: the CLIP
embedding of each image, or a language model's answer to a question about each image.

    from dask.distributed import Client
    from libmm import batch
    client = Client("tcp://scheduler:8786")          # or Client(LocalCluster(...)), or None
    emb = batch.embed_images("models/scenes-clip.gguf", "photos/", client=client)
    emb.array          # numpy (n, d) in input order; a row of NaN where the image failed
    emb.errors         # {index: "message"} for the images that failed
    ans = batch.answer_images("models/scenes-llava.gguf", "models/scenes-mmproj.gguf",
                              paths, "Describe the image.", client=client)
    ans.values         # [str or None, ...] in input order

The images are split into chunks, one task each. A worker process loads each model once (the
first task that needs it) and keeps it for the next tasks; the threads of a worker share that
model, each with a session of its own. Model paths and image paths are read by the workers, so
they must be valid there (a shared filesystem); give images as bytes to send their content
instead. An image that cannot be read or decoded gives an error for that item; the others go
on. With client=None the same work runs in this process, one chunk after another.
"""
import os
import threading

from .image import Image
from .model import Model
from .session import Session

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

# Per process (each dask worker): models by (path, mmproj), loaded once; sessions by model,
# one per thread.
_models = {}
_models_lock = threading.Lock()
_local = threading.local()


def _model(path, mmproj=None):
    key = (os.fspath(path), mmproj and os.fspath(mmproj))
    with _models_lock:
        if key not in _models:
            _models[key] = Model(*key)
        return _models[key]


def _session(model, options):
    sessions = _local.__dict__.setdefault("sessions", {})
    key = (id(model), tuple(sorted(options.items())))
    if key not in sessions:
        sessions[key] = Session(model, options)
    return sessions[key]


def _image(item):
    if isinstance(item, (bytes, bytearray, memoryview)):
        return Image.from_bytes(item)
    return Image.open(os.fspath(item))


def _error(e):
    return "%s: %s" % (type(e).__name__, e)


def _embed_chunk(items, clip_path):
    """[(embedding as a list, None) or (None, error)] for each item of the chunk."""
    model = _model(clip_path)
    out = []
    for item in items:
        try:
            out.append(([float(v) for v in model.embed_image(_image(item))], None))
        except Exception as e:  # recorded for this item; the chunk goes on
            out.append((None, _error(e)))
    return out


def _answer_chunk(items, model_path, mmproj_path, question, options):
    model = _model(model_path, mmproj_path)
    session = _session(model, options)
    out = []
    for item in items:
        try:
            session.reset()
            session.add_message("user", question, images=[_image(item)])
            out.append(("".join(session.generate()), None))
        except Exception as e:
            out.append((None, _error(e)))
    return out


def image_files(folder):
    """The PNG and JPEG files of a folder, sorted by name."""
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_SUFFIXES))
    return [os.path.join(folder, n) for n in names]


def _items(images):
    if isinstance(images, (str, os.PathLike)) and os.path.isdir(images):
        return image_files(images)
    return list(images)


def _run(client, chunk_size, fn, items, *args):
    """fn(chunk, *args) over the chunks of items, on the cluster or here; the results joined
    in input order."""
    chunks = [items[i:i + chunk_size] for i in range(0, len(items), chunk_size)]
    if client is None:
        parts = [fn(chunk, *args) for chunk in chunks]
    else:  # pure=False: every chunk is its own task, even when two have equal content
        parts = client.gather([client.submit(fn, chunk, *args, pure=False) for chunk in chunks])
    return [r for part in parts for r in part]


class BatchResult:
    """The results of a batch in input order: `items` (the inputs), `values` (a result or None
    per item) and `errors` ({index: message} for the items that failed)."""

    def __init__(self, items, results):
        self.items = items
        self.values = [v for v, _ in results]
        self.errors = {i: e for i, (_, e) in enumerate(results) if e is not None}

    @property
    def array(self):
        """The values as a float32 numpy array (n, d), a row of NaN for a failed item (needs
        numpy and at least one success)."""
        import numpy as np
        d = next(len(v) for v in self.values if v is not None)
        out = np.full((len(self.values), d), np.nan, dtype=np.float32)
        for i, v in enumerate(self.values):
            if v is not None:
                out[i] = v
        return out

    def __len__(self):
        return len(self.values)

    def __repr__(self):
        return "BatchResult(%d items, %d errors)" % (len(self.values), len(self.errors))


def embed_images(clip_path, images, client=None, chunk_size=16):
    """CLIP image embeddings (unit length) of `images` (a folder, or a list of paths or of
    encoded PNG/JPEG bytes) with the CLIP file at clip_path."""
    items = _items(images)
    return BatchResult(items, _run(client, chunk_size, _embed_chunk, items, clip_path))


def answer_images(model_path, mmproj_path, images, question, client=None, chunk_size=8,
                  **settings):
    """The model's answer to `question` about each image, as a user message with the image in
    the session's chat template. settings: session options (max_tokens, temperature, seed,
    n_ctx, n_threads, ...); greedy decoding by default, so answers are reproducible."""
    items = _items(images)
    return BatchResult(items, _run(client, chunk_size, _answer_chunk, items, model_path,
                                   mmproj_path, question, dict(settings)))
