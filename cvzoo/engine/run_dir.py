"""Run folders: ``<project>/<task>/<name>``, numbered instead of overwritten."""

from __future__ import annotations

from pathlib import Path


def increment_path(path: Path, exist_ok: bool = False) -> Path:
    """``runs/classify/exp`` -> the first of exp, exp2, exp3, ... that does not exist yet."""
    path = Path(path)
    if exist_ok or not path.exists():
        return path
    n = 2
    while (candidate := path.with_name(f"{path.name}{n}")).exists():
        n += 1
    return candidate


def make_run_dir(project: str, task: str, name: str, exist_ok: bool = False) -> Path:
    run_dir = increment_path(Path(project) / task / name, exist_ok=exist_ok)
    (run_dir / "weights").mkdir(parents=True, exist_ok=True)
    return run_dir
