"""Which checkpoint ``--resume`` means, which folder the resumed run writes to, and its configuration.

A resumed run continues its saved configuration. Of the settings the user gave again, those that say
where the run happens (device, workers, image cache, progress bar) are taken; a larger ``train.epochs`` extends a
run (finished or not); any other difference is an error rather than a silently ignored flag.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cvzoo.config import Config, ConfigError, apply_overrides, from_dict
from cvzoo.config.core import get_value
from cvzoo.config.moved import upgrade_saved_config

# Settings of the machine rather than of the experiment: a resumed run may change them.
MACHINE_KEYS = ("train.device", "data.workers", "data.cache", "run.progress")


def resolve_resume(config: Config) -> Path:
    """The checkpoint of ``run.resume``: a path, or ``auto`` = ``<project>/<task>/<name>/weights/last.pt``.

    ``auto`` matches the run name exactly (``--name exp`` never picks ``exp2`` or ``exp_old``).
    """
    resume = config.run.resume
    if resume != "auto":
        return Path(resume)
    task_dir = Path(config.run.project, config.task)
    path = task_dir / config.run.name / "weights" / "last.pt"
    if not path.is_file():
        others = sorted(p.parent.parent.name for p in task_dir.glob("*/weights/last.pt"))
        hint = f"; runs with a last.pt there: {', '.join(others)} (pick one with --name)" if others else ""
        raise FileNotFoundError(f"--resume auto: no {path}{hint}")
    return path


def run_dir_of(checkpoint: Path) -> Path | None:
    """The run folder a checkpoint continues in place: only a run's own ``<run>/weights/last.pt``.

    Any other file (a copied checkpoint, ``best.pt``, ``epoch5.pt``) starts a new run folder: resuming
    it in place would write into folders above it, or replace the run's later history with another.
    """
    checkpoint = checkpoint.resolve()
    run_dir = checkpoint.parent.parent
    if checkpoint.name == "last.pt" and checkpoint.parent.name == "weights" and (run_dir / "args.yaml").is_file():
        return run_dir
    return None


def resumed_config(state: dict[str, Any], requested: Config, explicit_keys: Iterable[str],
                   checkpoint: Path) -> tuple[Config, list[str]]:
    """The configuration a resumed run continues with, and log lines saying what changed.

    Args:
        state: the loaded checkpoint.
        requested: the configuration built from the user's flags (``run.resume`` set).
        explicit_keys: the dotted keys the user set (recipe, flags, ``--set``); defaults are not among
            them, so an unchanged default never counts as a request.
        checkpoint: the checkpoint's path, for messages.
    """
    saved = from_dict(Config, upgrade_saved_config(state["config"]))
    locators = {"run.resume", "run.exist_ok"}
    if requested.run.resume == "auto":  # the name and project only found the checkpoint
        locators |= {"run.name", "run.project"}
    differing = [k for k in dict.fromkeys(explicit_keys)
                 if k not in locators and get_value(requested, k) != get_value(saved, k)]
    notes: list[str] = []
    updates: dict[str, Any] = {"run.resume": requested.run.resume}
    for key in differing:
        if key in MACHINE_KEYS:
            updates[key] = get_value(requested, key)
            notes.append(f"{key}: {get_value(saved, key)!r} -> {get_value(requested, key)!r}")
    if "train.epochs" in differing:
        done = int(state["epoch"])
        epochs = requested.train.epochs
        if epochs <= done:
            raise ConfigError(
                f"train.epochs={epochs}: {checkpoint} has already trained {done} epochs; "
                f"give more than {done} to extend the run"
            )
        updates["train.epochs"] = epochs
        notes.append(f"train.epochs: {saved.train.epochs} -> {epochs} (the lr schedule is stretched to "
                     f"{epochs} epochs from here on)")
    rejected = [k for k in differing if k not in MACHINE_KEYS and k != "train.epochs"]
    if rejected:
        changes = ", ".join(f"{k}={get_value(requested, k)!r} (saved {get_value(saved, k)!r})" for k in rejected)
        raise ConfigError(
            f"--resume continues the saved configuration of {checkpoint}; these settings differ from it "
            f"and cannot change in a resumed run: {changes}. Only {', '.join(MACHINE_KEYS)} and a larger "
            f"train.epochs can; to train with other settings start a new run from its weights "
            f"(--weights {checkpoint})"
        )
    return apply_overrides(saved, updates), notes
