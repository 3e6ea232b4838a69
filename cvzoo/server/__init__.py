"""``cvzoo serve``: an HTTP JSON API (an image in, the task's predictions out) and one web page to drop
images on and see them drawn, for a checkpoint or an exported file. An optional extra:
``pip install 'cvzoo[serve]'`` (FastAPI, uvicorn, python-multipart).

- ``POST /predict`` (multipart field ``image``; query ``topk``, ``conf``, ``iou``) ->
  ``{"task", "image", "width", "height", "time_ms": {"decode", "predict", "total"}, ...}`` with the task's
  predictions: ``topk`` (classification), ``detections`` (boxes xyxy in image pixels, masks as
  uncompressed column-major RLE ``{"size": [H, W], "counts": [...]}`` for instance segmentation) or
  ``classes`` + ``masks`` (segmentation: one RLE per predicted class). A corrupt or non-image upload is
  HTTP 400 with the reason.
- ``GET /`` -> the page (plain HTML and JavaScript in this package, nothing fetched from elsewhere).
- ``GET /info`` -> the task, class names and model file.
"""

# No ``from __future__ import annotations``: FastAPI reads the endpoint annotations at run time, and the
# request types (UploadFile, ...) are imported inside create_app (the extra is optional).
import importlib.util
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

PAGE = Path(__file__).with_name("page.html")


def require_serve() -> None:
    missing = [m for m in ("fastapi", "uvicorn", "multipart") if importlib.util.find_spec(m) is None]
    if missing:
        names = {"multipart": "python-multipart"}
        raise ImportError(f"cvzoo serve needs {', '.join(names.get(m, m) for m in missing)}, which this environment "
                          "lacks: pip install 'cvzoo[serve]' (fastapi, uvicorn, python-multipart)")


class Predictor:
    """The task and model of ``weights`` loaded once; ``predict(bytes)`` is one image's predictions. Calls
    are serialised (a lock): one model instance, and the runtimes already use every thread per call."""

    def __init__(self, weights: str | Path, backend: str | None = None, threads: int = 0) -> None:
        import torch

        from cvzoo import api
        from cvzoo.layers.reparam import prepare_for_inference

        self.weights = str(weights)
        self.device = torch.device("cpu")
        if api.is_exported(weights):
            self.task, self.model = api.load_exported(weights, threads)
        else:
            self.task, self.model, _ = api.load_trained(weights, self.device)
            if backend not in (None, "torch"):
                self.model = api.exported_model_for(weights, backend, None, threads)
            else:
                prepare_for_inference(self.model, self.device)
        self.lock = threading.Lock()

    @property
    def class_names(self) -> list[str]:
        return list(getattr(self.task, "class_names", None) or getattr(self.task, "classes", None) or [])

    def predict(self, data: bytes, filename: str, options: dict[str, Any]) -> dict[str, Any]:
        from cvzoo.data.images import load_image

        start = time.perf_counter()
        suffix = Path(filename).suffix.lower() or ".img"
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"upload{suffix}"
            path.write_bytes(data)
            image = load_image(path)  # CorruptImageError (-> HTTP 400) for anything that is not an image
            decoded = time.perf_counter()
            with self.lock:
                result = self.task.predict_files(self.model, [path], self.device, **options)[0]
        done = time.perf_counter()
        body = {"task": self.task.name, "image": filename, "width": image.width, "height": image.height,
                **_json_predictions(result, self.class_names),
                "time_ms": {"decode": round(1000 * (decoded - start), 2), "predict": round(1000 * (done - decoded), 2),
                            "total": round(1000 * (done - start), 2)}}
        return body


def _json_predictions(result: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """A task's predict result as JSON-ready fields (RLE masks the page can draw)."""
    from cvzoo.ops.masks import rle_decode, rle_encode

    if "topk" in result:
        return {"topk": result["topk"]}
    if "detections" in result:
        detections = []
        for det in result["detections"]:
            det = {k: v for k, v in det.items() if k != "image"}
            if "segmentation" in det:  # compressed COCO RLE -> counts the page decodes without a library
                det["segmentation"] = _plain_rle(rle_encode(rle_decode(det["segmentation"]), compressed=False))
            detections.append(det)
        return {"detections": detections}
    mask = result["mask"]
    present = [int(c) for c in np.unique(mask)]
    rles = rle_encode(np.stack([mask == c for c in present]), compressed=False) if present else []
    return {"classes": result["classes"],
            "masks": [{"class": names[c] if c < len(names) else str(c), "index": c, **_plain_rle(rle)}
                      for c, rle in zip(present, rles)]}


def _plain_rle(rle: dict[str, Any]) -> dict[str, Any]:
    return {"size": [int(v) for v in rle["size"]], "counts": [int(v) for v in rle["counts"]]}


def create_app(weights: str | Path, backend: str | None = None, threads: int = 0, topk: int = 5) -> Any:
    """The FastAPI application serving ``weights`` (a checkpoint or an exported file)."""
    require_serve()
    from fastapi import FastAPI, File, HTTPException, Query, UploadFile
    from fastapi.responses import HTMLResponse

    from cvzoo.data.images import CorruptImageError

    predictor = Predictor(weights, backend, threads)
    app = FastAPI(title="cvzoo serve", docs_url=None, redoc_url=None)
    page = PAGE.read_text()

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/info")
    def info() -> dict[str, Any]:
        return {"task": predictor.task.name, "classes": predictor.class_names, "weights": predictor.weights}

    # A plain (sync) endpoint: FastAPI runs it in its thread pool, so a slow prediction does not block the
    # server's event loop (other requests are accepted and queue on the predictor's lock).
    @app.post("/predict")
    def predict(image: UploadFile = File(...), k: int = Query(topk, alias="topk", ge=1),  # noqa: B008
                conf: float | None = Query(None, ge=0, le=1), iou: float | None = Query(None, ge=0, le=1)) -> dict:
        data = image.file.read()
        if not data:
            raise HTTPException(400, f"{image.filename or 'upload'}: empty file")
        options: dict[str, Any] = {}
        if predictor.task.name == "classify":
            options["topk"] = k
        elif predictor.task.name in ("detect", "instance"):
            options.update({key: v for key, v in (("conf", conf), ("iou", iou)) if v is not None})
        try:
            return predictor.predict(data, image.filename or "upload", options)
        except CorruptImageError as err:
            raise HTTPException(400, f"{image.filename or 'upload'}: not a readable image ({err})") from err
        except ValueError as err:  # a setting the model cannot take (e.g. a lower conf than an NMS graph's)
            raise HTTPException(400, str(err)) from err

    return app


def serve(weights: str | Path, host: str = "127.0.0.1", port: int = 8000, backend: str | None = None,
          threads: int = 0, topk: int = 5) -> None:
    """Run the server until interrupted (Ctrl-C: uvicorn finishes open requests and stops)."""
    app = create_app(weights, backend, threads, topk)
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="info")


__all__ = ["Predictor", "create_app", "require_serve", "serve"]
