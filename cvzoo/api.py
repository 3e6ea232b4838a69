"""The Python API that mirrors the CLI: train, evaluate, predict, export.

    import cvzoo
    result = cvzoo.train(task="classify", model="resnet20_cifar", data="fashion_mnist_sample", epochs=3)
    metrics = cvzoo.evaluate(result.best_checkpoint)
    predictions = cvzoo.predict(result.best_checkpoint, "images/")   # list of plain dicts
    cvzoo.export(result.best_checkpoint, format="onnx")

Every function returns plain Python / NumPy values.
"""

from __future__ import annotations

import glob
import logging
from pathlib import Path
from typing import Any

import torch

from cvzoo.config import Config, ConfigError, apply_overrides, config_to_dict, from_dict
from cvzoo.config.core import flatten, read_yaml
from cvzoo.config.moved import upgrade_saved_config
from cvzoo.config.tasks import TASKS
from cvzoo.config.validate import validate_config
from cvzoo.data.images import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    CorruptImageError,
    CorruptVideoError,
    DatasetError,
    MissingDataError,
)
from cvzoo.data.video import is_clip_source
from cvzoo.engine.checkpoint import load_checkpoint
from cvzoo.engine.device import select_device
from cvzoo.engine.evaluate import run_validation
from cvzoo.engine.run_dir import make_run_dir
from cvzoo.engine.trainer import Trainer, TrainResult
from cvzoo.engine.workers import auto_workers
from cvzoo.export.runtime import BACKEND_OF_SUFFIX
from cvzoo.layers.reparam import prepare_for_inference
from cvzoo.models.registry import UnknownModelError, get_entry, model_recipe
from cvzoo.tasks import Task, task_class
from cvzoo.tasks.base import checkpoint_config

logger = logging.getLogger(__name__)


MEDIA_EXTENSIONS = IMAGE_EXTENSIONS + VIDEO_EXTENSIONS  # what predict takes from a folder or a glob

# Short keyword names accepted by train() and the CLI flags, mapped to config keys.
SHORTCUTS = {
    "task": "task",
    "model": "model.name",
    "data": "data.source",
    "epochs": "train.epochs",
    "batch": "data.batch_size",
    "imgsz": "data.img_size",
    "lr": "optim.lr",
    "optimizer": "optim.name",
    "device": "train.device",
    "workers": "data.workers",
    "weights": "model.weights",
    "name": "run.name",
    "project": "run.project",
    "resume": "run.resume",
    "seed": "train.seed",
    "amp": "train.amp",
    "profile": "train.profile",
    "exist_ok": "run.exist_ok",
}


def build_config(config: str | Path | Config | None = None, overrides: list[str] | None = None,
                 **shortcuts: Any) -> Config:
    """A Config: the task's defaults, then a recipe (path or object), shortcut keywords, dotted overrides.

    The task is read from (last wins) the recipe, ``task=`` and a ``task=...`` override; its
    defaults (``cvzoo.config.tasks.TASKS``) come first so that everything the user wrote takes precedence.
    """
    return build_config_with_sources(config, overrides, **shortcuts)[0]


def build_config_with_sources(config: str | Path | Config | None = None, overrides: list[str] | None = None,
                              **shortcuts: Any) -> tuple[Config, dict[str, str]]:
    """``build_config`` and where each setting came from: ``{dotted key: layer}``, the last layer to set
    it. The layers, first to last: ``"<task> task defaults"``, ``"<family> model defaults"`` (the default
    recipe of the model the config names, e.g. YOLO's for ``yolov8n``), ``"recipe <path>"``, ``"flags"``,
    ``"--set"``. The trainer reports it and, on resume, uses it to tell the settings a user asked to
    change from defaults."""
    if isinstance(config, Config):
        layers: list[tuple[str, dict[str, Any] | list[str]]] = []
        base = config
    else:
        recipe = read_yaml(config) if config is not None else {}
        try:
            flat = flatten(recipe)
        except ConfigError as err:
            raise ConfigError(f"{config}: {err}") from None
        task = _stated(flat, shortcuts, overrides, "task", "task")
        model = _stated(flat, shortcuts, overrides, "model", "model.name")
        inferred = task is None and model is not None and task_of_model(model)
        base = apply_overrides(Config(), {"task": task or inferred or "classify"})
        layers = [(f"{base.task} task defaults", dict(TASKS[base.task].defaults)), (f"recipe {config}", flat)]
        if inferred:  # shown first in the settings line: the task nobody named
            layers.insert(0, (f"task of model {model}", {"task": inferred}))
    pairs = {}
    for key, value in shortcuts.items():
        if value is None:
            continue
        if key not in SHORTCUTS:
            raise TypeError(f"unknown argument {key!r}; use overrides=['section.key=value'] for other keys")
        pairs[SHORTCUTS[key]] = value
    layers += [("flags", pairs), ("--set", list(overrides or []))]
    cfg, sources = _apply_layers(base, layers)
    if not isinstance(config, Config):
        # The model is known only once every layer is applied; its recipe then goes in second.
        family, model_defaults = model_recipe(cfg.model.name, TASKS[cfg.task].model_task or cfg.task)
        if model_defaults:
            after_task = 1 + next(i for i, (name, _) in enumerate(layers) if name.endswith(" task defaults"))
            layers.insert(after_task, (f"{family} model defaults", model_defaults))
            cfg, sources = _apply_layers(base, layers)
    check_config(cfg)
    return cfg, sources


def _stated(recipe: dict[str, Any], shortcuts: dict[str, Any], overrides: list[str] | None, shortcut: str,
            key: str) -> Any:
    """The value of dotted ``key`` as the user stated it (last wins: recipe, shortcut keyword, override)."""
    value = recipe.get(key)
    value = shortcuts.get(shortcut) or value
    for item in overrides or []:
        if item.split("=", 1)[0].strip() == key:
            value = item.split("=", 1)[1].strip()
    return value


def task_of_model(name: str) -> str | None:
    """The task registered model ``name`` trains for when no task is named: its registry task, and
    ``instance`` for a detector whose detections carry masks (Mask R-CNN; ``--task detect`` trains it on
    boxes only); None for an unknown name (the config check names it)."""
    try:
        entry = get_entry(name)
    except UnknownModelError:
        return None
    if entry.task == "detect" and getattr(entry.builder, "predicts_masks", False):
        return "instance"
    return entry.task if entry.task in TASKS else None


def _apply_layers(base: Config, layers: list[tuple[str, dict[str, Any] | list[str]]]) -> tuple[Config, dict[str, str]]:
    """Apply ``(layer name, dotted overrides)`` in order; ``{key: last layer that set it}`` in that order."""
    cfg, sources = base, {}
    for layer, values in layers:
        try:
            cfg = apply_overrides(cfg, values)
        except ConfigError as err:
            if layer.startswith("recipe "):
                raise ConfigError(f"{layer[len('recipe '):]}: {err}") from None
            raise
        keys = [v.split("=", 1)[0].strip() for v in values] if isinstance(values, list) else list(values)
        for key in keys:
            sources.pop(key, None)  # re-inserted last: the layers keep the order they were applied in
            sources[key] = layer
    return cfg, sources


def check_config(cfg: Config) -> None:
    """Raise ConfigError naming the key for a value the run cannot use, before any work (no run folder):
    ranges (``cvzoo.config.validate``), ``train.device`` on this machine, and ``model.name`` with the
    constructor keywords the config passes to it."""
    validate_config(cfg)
    select_device(cfg.train.device)  # DeviceError names train.device
    task_class(cfg.task).check_model_config(cfg)


def train(config: str | Path | Config | None = None, overrides: list[str] | None = None,
          **shortcuts: Any) -> TrainResult:
    """Train a model; see ``SHORTCUTS`` for the keyword arguments (``model=``, ``data=``, ``epochs=``...)."""
    cfg, sources = build_config_with_sources(config, overrides, **shortcuts)
    return Trainer(cfg, sources=sources).fit()


def load_trained(weights: str | Path, device: str | torch.device = "cpu") -> tuple[Task, torch.nn.Module, dict]:
    """Rebuild the task and model of a cvzoo training checkpoint (EMA weights when the run had EMA)."""
    checkpoint = load_checkpoint(weights)
    if not isinstance(checkpoint, dict) or "config" not in checkpoint or "task" not in checkpoint:
        raise ValueError(
            f"{weights} is not a cvzoo training checkpoint (no config/task inside); for a bare state dict "
            "use cvzoo.create_model(name, weights=PATH)"
        )
    config = checkpoint_config(from_dict(Config, upgrade_saved_config(checkpoint["config"])))
    task = task_class(checkpoint["task"])(config)
    model = task.build_inference_model(checkpoint.get("extras", {}))
    state = checkpoint["ema"]["module"] if checkpoint.get("ema") else checkpoint["model"]
    model.load_state_dict(state)
    device = torch.device(device) if not isinstance(device, torch.device) else device
    return task, model.to(device).eval(), checkpoint


def enable_augment(task: Task) -> None:
    """Switch test-time augmentation on for ``task``, or say clearly that it has none."""
    task.enable_augment()


def evaluate(weights: str | Path, data: str | None = None, batch: int | None = None, device: str = "auto",
             split: str = "val", save_dir: str | Path | None = None, plots: bool = True,
             overrides: list[str] | None = None, augment: bool = False, threads: int = 0) -> dict[str, Any]:
    """Validate a checkpoint on its own validation data (or ``data``); returns the metrics dict.

    ``weights`` may also be a file ``cvzoo export`` wrote (``.onnx``, ``.xml``, ``.torchscript``, float32 or
    int8): it runs on the CPU in its runtime (``threads`` intra-op threads, 0: the runtime's default) and
    gives the task's metrics (no validation losses: the graph has no loss).

    ``augment=True`` validates with test-time augmentation (detection: see ``cvzoo.models.detection.tta``;
    classification: logits of the image and its mirror averaged).
    """
    if is_exported(weights):  # an exported file: the task from its metadata, the graph in its runtime
        if augment:
            raise ValueError("test-time augmentation needs the torch model: an exported graph has a fixed input size")
        dev = torch.device("cpu")
        task, model = load_exported(weights, threads)
    else:
        dev = select_device(device, key="device")
        task, model, _ = load_trained(weights, dev)
    if augment:
        enable_augment(task)
    pairs: dict[str, Any] = {}
    if data is not None:
        pairs["data.source"] = data
    if batch is not None:
        pairs["data.batch_size"] = batch
    task.config = apply_overrides(apply_overrides(task.config, pairs), overrides or [])
    dataset = task.build_eval_dataset(split)
    if len(dataset) == 0:
        raise ValueError(f"the {split} split of {task.config.data.source!r} is empty: nothing to evaluate")
    from torch.utils.data import DataLoader

    batch_size = task.config.data.eval_batch_size()
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=False, collate_fn=task.collate,
        num_workers=auto_workers(dev, task.config.data.workers, dataset, batch_size),
    )
    metrics, losses = run_validation(task, model, loader, dev, progress=True)
    metrics = {**metrics, **{f"val/{k}": v for k, v in losses.items()}}
    if save_dir is None:
        save_dir = make_run_dir(task.config.run.project, task.config.task, "val")
    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    if plots:
        task.save_artifacts(save_dir, metrics)
    metrics["save_dir"] = str(save_dir)
    return metrics


def expand_sources(sources: str | Path | list[str | Path], clip_folders: bool = False) -> list[Path]:
    """Image files from a file, a folder (sorted, non-recursive) or a glob; errors name what is missing.

    ``clip_folders`` (a task that ``predicts_clip_folders``): a folder of frame images is one input, and
    a folder of such folders lists them (with the videos beside them).
    """
    if isinstance(sources, (str, Path)):
        sources = [sources]
    files: list[Path] = []
    for source in sources:
        text = str(source)
        path = Path(text)
        if any(ch in text for ch in "*?["):
            matches = sorted(Path(p) for p in glob.glob(text, recursive=True))
            matches = [p for p in matches if p.suffix.lower() in MEDIA_EXTENSIONS or (clip_folders and is_clip_source(p))]
            if not matches:
                raise FileNotFoundError(f"no images match {text!r}")
            files.extend(matches)
        elif path.is_dir() and clip_folders and is_clip_source(path):
            files.append(path)
        elif path.is_dir():
            matches = sorted(p for p in path.iterdir()
                             if p.suffix.lower() in MEDIA_EXTENSIONS or (clip_folders and p.is_dir() and is_clip_source(p)))
            if not matches:
                raise FileNotFoundError(f"no images in folder {path}")
            files.extend(matches)
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"source not found: {path}")
    return files


def predict(weights: str | Path, source: str | Path | list[str | Path], device: str = "auto",
            save_dir: str | Path | None = None, backend: str | None = None, augment: bool = False,
            threads: int = 0, **options: Any) -> list[dict[str, Any]]:
    """Predict on images; the result is one plain dict per image (task-specific fields).

    A file that cannot be predicted (corrupt image, unreadable video, a video for a task that predicts on
    images) does not stop the others: its entry is ``{"image": path, "error": reason, "rows": []}``, after
    the predicted ones. Only when no file could be predicted is the first such error raised.
    ``classes`` (detection) may name classes or give their indices.

    ``weights`` may be a file ``cvzoo export`` wrote (``.onnx``: onnxruntime, ``.xml``: OpenVINO,
    ``.torchscript``), float32 or int8: it runs in its runtime, with the task, class names and
    preprocessing recorded in its metadata. ``backend="onnxruntime"`` / ``"openvino"`` / ``"torchscript"``
    runs the export of the checkpoint given as ``weights`` instead of the checkpoint (``onnx=PATH`` or the
    default file next to the checkpoint, see ``exported_model_for``). A detection file
    exported with ``nms=True`` returns its detections directly (no second NMS). ``augment=True`` adds
    test-time augmentation (detection, torch backend). ``imgsz`` predicts at another size than the trained
    one; ``slice=TILE`` (and ``slice_overlap``) runs sliced inference on large images (detection).
    """
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    dev = select_device(device, key="device")
    if is_exported(weights):  # an exported file on its own: the task from its metadata
        own = BACKEND_OF_SUFFIX[Path(weights).suffix.lower()]
        if backend not in (None, own):
            raise ValueError(f"{weights} runs with backend {own!r}, not {backend!r} (the backend of an exported "
                             "file is its format's)")
        if augment:
            raise ValueError("test-time augmentation needs the torch model: an exported graph has a fixed input size")
        if options.pop("onnx", None) is not None:
            raise ValueError(f"{weights} is itself the exported file; --onnx is for a checkpoint's export")
        task, model = load_exported(weights, threads)
    else:
        task, model, _ = load_trained(weights, dev)
        if task.generates:  # a GAN: no input images; samples, class grid and interpolation
            if source:
                raise ValueError(f"{weights} is a {task.name} checkpoint: it generates images and takes no source "
                                 f"(got {source!r}); give the number of images with samples=N (--samples N)")
            wanted = {k: options.pop(k) for k in ("samples", "seed") if options.get(k) is not None}
            return task.generate(model, dev, None if save_dir is None else Path(save_dir), **wanted)
        if augment:
            enable_augment(task)
        if backend not in (None, "torch"):
            model = exported_model_for(weights, backend, options.pop("onnx", None), threads)
        else:
            # Inference only from here: BatchNorm folded into the convs, channels-last weights on the CPU.
            prepare_for_inference(model, dev)
    imgsz = options.pop("imgsz", None)
    if imgsz is not None:
        task.set_predict_size(imgsz, model)
    files = expand_sources(source, clip_folders=task.predicts_clip_folders)
    if not files:
        raise ValueError("no images given: name image files, folders or globs to predict on")
    if options.get("classes") is not None:
        options["classes"] = class_indices(options["classes"], getattr(task, "class_names", None) or [])
    results, failed = predict_each(task, model, files, dev, options)
    if failed and not results:
        raise failed[0][1]
    if save_dir is not None and results:
        task.save_predictions(results, Path(save_dir))
    return results + [{"image": str(path), "error": str(err), "rows": []} for path, err in failed]


PREDICT_CHUNK = 32  # files per predict_files call: classification batches within it


def predict_each(task: Task, model: Any, files: list[Path], device: torch.device,
                 options: dict[str, Any]) -> tuple[list[dict[str, Any]], list[tuple[Path, Exception]]]:
    """``task.predict_files`` over ``files`` in chunks; a chunk with an unreadable file is redone file by
    file so that only that file is lost. Returns the results and ``(file, error)`` of the files skipped."""
    results: list[dict[str, Any]] = []
    failed: list[tuple[Path, Exception]] = []
    videos = [f for f in files if f.suffix.lower() in VIDEO_EXTENSIONS]
    if videos and not task.predicts_video:
        failed += [(f, DatasetError(f"{f}: a video; the {task.name} task predicts on images (detection models "
                                    "take videos)")) for f in videos]
        files = [f for f in files if f.suffix.lower() not in VIDEO_EXTENSIONS]
    for start in range(0, len(files), PREDICT_CHUNK):
        chunk = files[start:start + PREDICT_CHUNK]
        try:
            results += task.predict_files(model, chunk, device, **options)
            continue
        except (CorruptImageError, CorruptVideoError, MissingDataError):
            pass  # find the file: redo the chunk one file at a time
        for path in chunk:
            try:
                results += task.predict_files(model, [path], device, **options)
            except (CorruptImageError, CorruptVideoError, MissingDataError) as err:
                failed.append((path, err))
    return results, failed


def class_indices(classes: list[int | str] | str, names: list[str]) -> list[int]:
    """Class names or indices (also one comma-separated string) -> indices; unknown ones are an error
    listing the model's classes."""
    if isinstance(classes, str):
        classes = [c for c in classes.split(",") if c.strip()]
    indices = []
    for item in classes:
        text = str(item).strip()
        if text.lstrip("-").isdigit():
            index = int(text)
            if names and not 0 <= index < len(names):
                raise ValueError(f"class index {index} is outside 0..{len(names) - 1} ({len(names)} classes)")
            indices.append(index)
        elif text in names:
            indices.append(names.index(text))
        else:
            raise ValueError(f"unknown class {text!r}; the model's classes: {names}")
    return indices


BACKENDS = ("torch", "onnxruntime", "openvino", "torchscript")


def is_exported(path: str | Path) -> bool:
    """Whether ``path`` names an exported file (by suffix) rather than a training checkpoint."""
    return Path(path).suffix.lower() in BACKEND_OF_SUFFIX


def load_exported(path: str | Path, threads: int = 0) -> tuple[Task, Any]:
    """The task (rebuilt from the file's metadata: config, class names, input size, normalisation) and the
    runtime graph of a file ``cvzoo export`` wrote (``.onnx``, ``.xml``, ``.torchscript``)."""
    from cvzoo.export.metadata import read_task_metadata
    from cvzoo.export.runtime import load_runtime

    if not Path(path).is_file():
        raise FileNotFoundError(f"no such file: {path}")
    model = load_runtime(path, threads)
    name, config, extras = read_task_metadata(model.metadata, str(path))
    task = task_class(name)(from_dict(Config, upgrade_saved_config(config)))
    task.restore_extras(extras)
    task.exported_graph = True
    return task, model


def onnx_model_for(weights: str | Path, onnx: str | Path | None = None) -> Any:
    """The onnxruntime graph of checkpoint ``weights``: ``exported_model_for(weights, "onnxruntime", onnx)``."""
    return exported_model_for(weights, "onnxruntime", onnx)


def exported_model_for(weights: str | Path, backend: str = "onnxruntime", path: str | Path | None = None,
                       threads: int = 0) -> Any:
    """The ``backend`` runtime graph of checkpoint ``weights``, never one exported from other weights.

    Exports record the checkpoint's sha256 (``cvzoo.export.provenance``). Without ``path`` the file
    next to the checkpoint (``best.pt`` -> ``best.onnx`` / ``best.xml`` / ``best.torchscript``) is used,
    and exported first, with a log line saying why, when it is missing or was made from other weights (a
    checkpoint retrained at the same path): export is one call and takes seconds. NMS settings built into
    the old file are kept. A file given as ``path`` is the user's to manage, so a mismatch there is an
    error, not an overwrite.
    """
    from cvzoo.export.provenance import file_sha256, source_mismatch
    from cvzoo.export.runtime import load_runtime

    fmt = {"onnxruntime": "onnx", "openvino": "openvino", "torchscript": "torchscript"}.get(backend)
    if fmt is None:
        raise ValueError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    digest = file_sha256(weights)
    if path is not None:
        model = load_runtime(path, threads)
        problem = source_mismatch(model.metadata, digest)
        if problem:
            raise ValueError(f"{path} {problem}, not from {weights}; export it again "
                             f"(cvzoo export {weights} --format {fmt} --out {Path(path).with_suffix('')}) or leave "
                             "out --onnx / onnx= to let predict export the checkpoint next to it")
        return model
    stem = Path(weights).with_suffix("")
    path = export_path(stem, fmt)
    model = load_runtime(path, threads) if path.is_file() else None
    problem = "does not exist" if model is None else source_mismatch(model.metadata, digest)
    if problem is None:
        return model
    logger.warning("%s %s; exporting %s to it", path, problem, weights)
    export(weights, format=fmt, out=stem, **_nms_settings(model.metadata if model else {}))
    return load_runtime(path, threads)


def _nms_settings(metadata: dict[str, str]) -> dict[str, Any]:
    """The ``export`` arguments that rebuild the NMS a file has inside (none for a file without)."""
    from cvzoo.models.detection.graph_nms import META_CONF, META_IOU, META_MAX_DET, META_NMS

    if metadata.get(META_NMS) != "1":
        return {}
    return {"nms": True, "conf": float(metadata[META_CONF]), "iou": float(metadata[META_IOU]),
            "max_det": int(metadata[META_MAX_DET])}


EXPORT_FORMATS = ("onnx", "onnx-int8", "openvino", "openvino-int8", "torchscript")


def export_path(out: str | Path, fmt: str) -> Path:
    """Where ``export`` writes format ``fmt`` for output stem ``out`` (``best`` -> ``best.onnx``,
    ``best-int8.onnx``, ``best.xml`` (+ ``best.bin``), ``best-int8.xml``, ``best.torchscript``)."""
    suffix = {"onnx": ".onnx", "onnx-int8": "-int8.onnx", "openvino": ".xml", "openvino-int8": "-int8.xml",
              "torchscript": ".torchscript"}
    if fmt not in suffix:
        raise ValueError(f"unknown export format {fmt!r}; use one of {', '.join(EXPORT_FORMATS)} or all")
    return Path(f"{out}{suffix[fmt]}")


def _require_format_packages(formats: list[str]) -> None:
    """The packages each format needs, checked before the checkpoint is read or any file written."""
    if any(f.startswith("openvino") for f in formats):
        from cvzoo.export.openvino import require_openvino

        require_openvino("openvino", *(("nncf",) if "openvino-int8" in formats else ()))
    if "onnx-int8" in formats:
        from cvzoo.export.quantize import require_quantization

        require_quantization()


def export(weights: str | Path, format: str = "onnx", out: str | Path | None = None, batch: int = 1,
           imgsz: int | None = None, check: bool = True, opset: int | None = None, nms: bool = False,
           conf: float = 0.25, iou: float = 0.7, max_det: int = 300, calib: int = 64, calib_split: str = "train",
           calib_data: str | None = None, onnx_exporter: str | None = None) -> list[Path]:
    """Export a checkpoint to ONNX (dynamic batch; checked in onnxruntime), its int8 version, OpenVINO IR
    (float32 / int8) and/or TorchScript; ``format`` is one of ``EXPORT_FORMATS``, a comma-separated list of
    them, or ``all`` (ONNX and TorchScript).

    ``nms=True`` (detection; ONNX and the formats made from it) puts NMS with ``conf``, ``iou`` and
    ``max_det`` inside the graph: its outputs are padded detections per image
    (``cvzoo.models.detection.graph_nms`` has the contract) and the settings are recorded in the file's
    metadata, as is the checkpoint's sha256 (so that ``predict(backend="onnxruntime")`` can tell a file
    exported from other weights). The int8 and OpenVINO formats are made from the ONNX file (written
    too); the int8 ones are calibrated on ``calib`` images of the ``calib_split`` split of the training
    data (or of ``calib_data``), with eval transforms.

    ``onnx_exporter`` (``"dynamo"`` / ``"torchscript"``) overrides the exporter the model's export module
    declares (``cvzoo.export.onnx.onnx_exporter_for``: torch.export-based unless the module says why not);
    ``opset`` defaults to that exporter's (18 / 17).
    """
    from cvzoo.export import export_onnx, export_torchscript
    from cvzoo.export.metadata import task_metadata
    from cvzoo.export.provenance import CHECKPOINT_SHA256, file_sha256

    formats = ["onnx", "torchscript"] if format == "all" else [f.strip() for f in format.split(",") if f.strip()]
    for fmt in formats:
        export_path("x", fmt)  # unknown names fail before any work
    _require_format_packages(formats)  # and so does a missing optional package
    task, model, checkpoint = load_trained(weights, "cpu")
    if nms:
        if not task.supports_export_nms:
            raise ValueError(f"NMS inside the exported graph (nms / --nms) is for detection; the {task.name!r} "
                             "task has no NMS")
        if "torchscript" in formats:
            raise ValueError("NMS inside the graph (nms / --nms) is exported to ONNX only (and the formats made from "
                             "it: onnx-int8, openvino, openvino-int8), not to TorchScript")
        task.export_nms = {"conf": conf, "iou": iou, "max_det": max_det}
    example = task.example_input(batch, imgsz)
    out = Path(out) if out is not None else Path(weights).with_suffix("")
    module = task.export_module(model)
    metadata = module.metadata() if nms else {}
    metadata[CHECKPOINT_SHA256] = file_sha256(weights)
    metadata.update(task_metadata(task.name, checkpoint["config"], checkpoint.get("extras", {})))
    onnx_path = export_path(out, "onnx")
    if any(f != "torchscript" for f in formats):
        # A module with its own outputs and axes (an R-CNN's final detections for one image of any size)
        # names them, and says how close another runtime's float32 convolutions can get; one whose outputs
        # may legitimately differ from PyTorch's row for row (NMS inside, CornerNet's top-k corners)
        # brings its own measure of the difference (parity_difference).
        export_onnx(module, onnx_path, example,
                    output_names=getattr(module, "output_names", None) or task.export_output_names(),
                    opset=opset, check=check, metadata=metadata, compare=getattr(module, "parity_difference", None),
                    dynamic_axes=getattr(module, "dynamic_axes", None), atol=getattr(module, "parity_atol", 1e-4),
                    exporter=onnx_exporter)
    images = None
    if any(f.endswith("-int8") for f in formats):
        if calib_data is not None:
            task.config = apply_overrides(task.config, {"data.source": calib_data})
        images = task.calibration_images(calib, calib_split, imgsz)
    source = f"the {calib_split} split of {task.config.data.source}"
    written = []
    for fmt in formats:
        path = export_path(out, fmt)
        if fmt == "onnx-int8":
            from cvzoo.export.quantize import quantize_onnx

            quantize_onnx(onnx_path, path, images, source)
        elif fmt in ("openvino", "openvino-int8"):
            from cvzoo.export.openvino import export_openvino

            export_openvino(onnx_path, path, images if fmt.endswith("-int8") else None, source)
        elif fmt == "torchscript":
            export_torchscript(task.export_module(model), path, example, check=check, metadata=metadata,
                               output_names=getattr(module, "output_names", None) or task.export_output_names())
        written.append(path)
    return written


__all__ = ["build_config", "check_config", "config_to_dict", "enable_augment", "evaluate", "expand_sources", "export",
           "export_path", "exported_model_for", "is_exported",
           "load_exported", "load_trained", "onnx_model_for", "predict", "train"]
