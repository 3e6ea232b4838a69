"""The task registry (``cvzoo.config.tasks.TASKS``) is the one place a task is declared: the config,
``build_config``, ``cvzoo.tasks.task_class``, ``cvzoo train --task`` and the trainer all read it."""

from __future__ import annotations

import dataclasses

import pytest

from cvzoo import api
from cvzoo.cli.main import build_parser
from cvzoo.config import TASKS, Config, ConfigError, TaskSpec
from cvzoo.config.core import get_value
from cvzoo.tasks import Task, task_class
from tests.engine.toy_task import ToyTask


@pytest.mark.parametrize("name", list(TASKS))
def test_every_task_has_a_section_defaults_and_an_implementation(name):
    spec = TASKS[name]
    assert spec.section in {f.name for f in dataclasses.fields(Config)}
    assert dataclasses.is_dataclass(getattr(Config(), spec.section))
    cls = task_class(name)
    assert issubclass(cls, Task) and cls.name == name
    cfg, sources = api.build_config_with_sources(task=name)
    for key, value in spec.defaults.items():
        assert get_value(cfg, key) == value and sources[key] == f"{name} task defaults"


def test_a_spec_in_the_registry_is_all_a_new_task_needs(monkeypatch, tmp_path):
    spec = TaskSpec("tests.engine.toy_task:ToyTask", section="classify",
                    defaults={"optim.lr": 0.123, "data.batch_size": 32})
    monkeypatch.setitem(TASKS, "toy", spec)

    cfg, sources = api.build_config_with_sources(overrides=["task=toy"])
    assert cfg.task == "toy" and cfg.optim.lr == 0.123 and sources["optim.lr"] == "toy task defaults"
    assert task_class("toy") is ToyTask
    assert build_parser().parse_args(["train", "--task", "toy"]).task == "toy"

    result = api.train(task="toy", epochs=1, device="cpu", project=str(tmp_path), overrides=[
        "run.progress=false", "run.tensorboard=false", "run.plots=false", "data.workers=0"])
    assert result.run_dir == tmp_path / "toy" / "exp" and result.last_checkpoint.exists()


def test_an_unregistered_task_is_one_error_listing_the_tasks(capsys):
    with pytest.raises(ConfigError, match="task: 'track' is not a task; choose one of classify, detect, instance, segment, siamese"):
        api.build_config(task="track")
    with pytest.raises(ValueError, match="unknown task 'track'"):
        task_class("track")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--task", "track"])
    assert "invalid choice: 'track'" in capsys.readouterr().err


def test_task_sections_are_declared_beside_the_registry():
    from cvzoo.config.schema import GeneralConfig
    from cvzoo.config.tasks import TaskSections

    sections = [f.name for f in dataclasses.fields(TaskSections)]
    assert sorted(sections) == sorted({spec.section for spec in TASKS.values()})
    # Config adds nothing of its own: the general sections, then the task sections.
    general = [f.name for f in dataclasses.fields(GeneralConfig)]
    assert [f.name for f in dataclasses.fields(Config)] == general + sections
