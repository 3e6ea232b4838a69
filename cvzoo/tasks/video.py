"""Video classification: clips ``[B, C, T, H, W]`` -> class; clip-level top-k and video-level accuracy.

The clip-level sibling of ``ClassificationTask``: the same loss (cross-entropy with label smoothing), the
same metrics, confusion matrices and per-class table (its evaluator, extended by the video-level
accuracy), its parameter groups and weight loading; what differs is the data (``VideoClipDataset``), the
models (``task="video"`` in the registry: CNN + LSTM/GRU, the frame average, the 3-D ResNets) and prediction
on whole videos.

Video-level accuracy (``video_top1``): validation takes ``video.clips_per_video`` evenly spaced clips of
each video and a video's prediction is the class of the mean of its clips' softmax probabilities, as
action recognition reports it (Simonyan & Zisserman 2014; Tran et al. 2018). It decides ``best.pt``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from cvzoo.config import ConfigError
from cvzoo.data.augment.video import KINETICS_MEAN, KINETICS_STD, ClipTransform
from cvzoo.data.datasets.video import (
    ClipTooShortError,
    VideoClipDataset,
    VideoSource,
    clip_span,
    clip_starts,
    generated_source,
    video_folder_split,
)
from cvzoo.data.synthetic_video import SOURCE_NAME
from cvzoo.data.video import count_frames, read_clip
from cvzoo.models.registry import create_model, get_entry
from cvzoo.tasks.base import Evaluator, Task
from cvzoo.tasks.classification import ClassificationTask, _EvaluatorAdapter


class VideoEvaluator(_EvaluatorAdapter):
    """The classification evaluator over clips, plus each video's summed clip probabilities.

    Batches are ``(clips, labels, video_indices)``; a video's clips may fall in different batches or ranks.
    """

    def __init__(self, num_classes: int, class_names: list[str]) -> None:
        super().__init__(num_classes, class_names)
        self.videos: dict[int, tuple[np.ndarray, int]] = {}  # video -> (summed probabilities [K], label)

    def update(self, outputs: torch.Tensor, batch: Any) -> None:
        super().update(outputs, batch)
        probs = outputs.detach().float().softmax(-1).cpu().numpy()
        for p, label, video in zip(probs, batch[1].tolist(), batch[2].tolist()):
            total, _ = self.videos.get(video, (0.0, label))
            self.videos[video] = (total + p, label)

    def compute(self) -> dict[str, Any]:
        metrics = self.inner.compute()
        if self.videos:
            hits = [int(np.argmax(total) == label) for total, label in self.videos.values()]
            metrics["video_top1"] = float(np.mean(hits))
            metrics["num_videos"] = len(hits)
        return metrics

    def state(self) -> Any:
        return {"clips": self.inner.state(), "videos": self.videos}

    def load_states(self, states: list[Any]) -> None:
        super().load_states([s["clips"] for s in states])
        self.videos = {}
        for state in states:
            for video, (total, label) in state["videos"].items():
                previous, _ = self.videos.get(video, (0.0, label))
                self.videos[video] = (previous + total, label)


class VideoTask(ClassificationTask):
    name = "video"
    fitness_metric = "video_top1"
    headline_metrics = ("top1", "top5", "video_top1")
    supports_augment = False
    predicts_video = True
    predicts_clip_folders = True
    takes_backbone = True  # cnn_lstm / cnn_gru / frame_average take model.backbone (+ backbone_weights)

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.frames = config.video.frames
        self.stride = config.video.stride

    # --- data ------------------------------------------------------------------------------------
    def _source(self, split: str) -> VideoSource:
        data, video = self.config.data, self.config.video
        if data.source == SOURCE_NAME:
            count = video.synthetic_train if split == "train" else video.synthetic_val
            return generated_source("train" if split == "train" else "val", count, max(self.span(), 2),
                                    seed=self.config.train.seed)
        return video_folder_split(data.source, "train" if split == "train" else split)

    def span(self) -> int:
        return clip_span(self.frames, self.stride)

    def _set_info(self, source: VideoSource) -> None:
        self.classes = list(source.classes)
        mode, side = source.probe()
        self.data_channels = 1 if mode == "L" else 3
        self.model_channels = self.config.model.kwargs.get("in_channels", self.data_channels)
        mean, std = (KINETICS_MEAN, KINETICS_STD) if self.model_channels == 3 else (
            (float(np.mean(KINETICS_MEAN)),), (float(np.mean(KINETICS_STD)),))
        self.mean, self.std = list(mean), list(std)
        # Clips at their own size up to 112 px, the input of the 3-D CNNs (Tran et al. 2018); frames are squared.
        self.img_size = self.config.data.img_size or min(side, 112)

    def _mode(self) -> str:
        return "L" if self.model_channels == 1 else "RGB"

    def _transform(self, train: bool) -> ClipTransform:
        aug = self.config.video.augment
        return ClipTransform(self.img_size, self.mean, self.std, train=train, scale=tuple(aug.scale),
                             hflip=aug.hflip)

    def _dataset(self, split: str, train: bool) -> Dataset:
        source = self._source(split)
        if not self.classes:
            self._set_info(source)
        elif list(source.classes) != self.classes:
            raise ValueError(f"{self.config.data.source!r} has classes {list(source.classes)[:10]}... but the model "
                             f"was trained on {self.classes[:10]}...; class lists must match")
        keep = self.kept_indices(split, len(source.items), source.labels)
        if keep is not None:
            source = VideoSource([source.items[i] for i in keep], [source.labels[i] for i in keep], source.classes,
                                 source.arrays)
        video = self.config.video
        # The generated clips are exactly one clip long: more than one clip per video would repeat it.
        clips = 1 if source.arrays is not None else video.clips_per_video
        return VideoClipDataset(source, self.frames, self.stride, train=train, clips_per_video=clips,
                                transform=self._transform(train), mode=self._mode(),
                                strict=self.config.data.strict, short=video.short)

    def build_datasets(self) -> tuple[Dataset, Dataset | None]:
        return self._train_and_val()  # clips need no batch mixing (classification's mixup / cutmix)

    # --- model -----------------------------------------------------------------------------------
    @classmethod
    def check_model_config(cls, config: Any) -> None:
        """Also, before any work: ``model.name`` is a video model (a classifier goes in ``model.backbone``)."""
        super().check_model_config(config)
        entry = get_entry(config.model.name)
        if entry.task != "video":
            hint = (f"; to run it on every frame use --model cnn_lstm --set model.backbone={entry.name}"
                    if entry.task == "classify" else "")
            raise ConfigError(f"model.name: {config.model.name!r} is a {entry.task} model, not a video model; see "
                              f"`cvzoo models --task video`{hint}")

    def _create(self, inference: bool = False) -> nn.Module:
        kwargs = {**self.model_kwargs(), "num_classes": len(self.classes), "in_channels": self.model_channels}
        if inference:  # the checkpoint holds the backbone's trained weights
            kwargs.pop("backbone_weights", None)
        return create_model(self.config.model.name, **kwargs)

    def restore_extras(self, extras: dict[str, Any]) -> None:
        super().restore_extras(extras)
        self.frames, self.stride = extras["frames"], extras["stride"]

    def build_inference_model(self, extras: dict[str, Any]) -> nn.Module:
        self.restore_extras(extras)
        return self._create(inference=True)

    def checkpoint_extras(self) -> dict[str, Any]:
        return {**super().checkpoint_extras(), "frames": self.frames, "stride": self.stride}

    # --- steps -----------------------------------------------------------------------------------
    def training_step(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        clips, labels, _ = batch
        return {"loss": self._loss(model(clips), labels)}

    def validation_step(self, model: nn.Module, batch: Any, evaluator: Evaluator) -> dict[str, torch.Tensor]:
        clips, labels, _ = batch
        logits = model(clips)
        evaluator.update(logits, batch)
        return {"loss": F.cross_entropy(logits.float(), labels)}

    def build_evaluator(self) -> Evaluator:
        return VideoEvaluator(len(self.classes), self.classes)

    def sample_images(self, batch: Any) -> torch.Tensor:
        """The middle frame of up to 16 clips, ``[N, C, H, W]`` in [0, 1]."""
        clips = batch[0][:16].detach().float().cpu()
        frames = clips[:, :, clips.shape[2] // 2]
        mean, std = torch.tensor(self.mean).view(1, -1, 1, 1), torch.tensor(self.std).view(1, -1, 1, 1)
        return (frames * std + mean).clamp(0, 1)

    # --- inference -------------------------------------------------------------------------------
    def example_input(self, batch: int = 1, imgsz: int | None = None) -> torch.Tensor:
        size = imgsz or self.img_size
        return torch.randn(batch, self.model_channels, self.frames, size, size)

    @torch.no_grad()
    def predict_files(self, model: Any, files: list[Path], device: torch.device, topk: int = 5,
                      **options: Any) -> list[dict]:
        """Top-k classes of each video file or frame folder: the mean softmax of ``video.clips_per_video``
        evenly spaced clips (as validation's video-level accuracy)."""
        if options:
            raise ValueError(f"video predict does not take {sorted(options)}")
        if isinstance(model, nn.Module):
            model.eval()
        transform = self._transform(train=False)
        k = min(topk, len(self.classes))
        results = []
        for path in files:
            clips = torch.stack([transform(torch.from_numpy(frames)) for frames in self.read_clips(path)])
            probs = torch.softmax(model(clips.to(device)).float(), dim=-1).mean(0).cpu()
            values, indices = probs.topk(k)
            top = [{"class": self.classes[i], "index": i, "prob": p} for i, p in zip(indices.tolist(), values.tolist())]
            rows = [{"video": str(path), "rank": r + 1, **t} for r, t in enumerate(top)]
            results.append({"image": str(path), "topk": top, "rows": rows})
        return results

    def read_clips(self, path: Path) -> list[np.ndarray]:
        """The evaluation clips of one video file or frame folder, each uint8 ``[T, H, W, C]``.

        Raises:
            ClipTooShortError: the video has fewer frames than one clip spans.
        """
        length, span = count_frames(path), self.span()
        if length < span:
            raise ClipTooShortError(path, length, self.frames, self.stride)
        frames = read_clip(path, range(length), self._mode())
        return [np.ascontiguousarray(frames[start:start + span:self.stride])
                for start in clip_starts(length, span, self.config.video.clips_per_video)]

    def save_predictions(self, results: list[dict], save_dir: Path) -> list[Path]:
        return Task.save_predictions(self, results, save_dir)  # JSON; no annotated image of a video


__all__ = ["VideoEvaluator", "VideoTask"]
