import signal
from pathlib import Path

from cvzoo.cli.main import main
from cvzoo.engine import trainer as trainer_module
from cvzoo.engine.trainer import TrainingInterrupted


def test_interrupted_training_exits_like_the_signal_and_names_the_checkpoint(tmp_path, monkeypatch, capsys):
    def stopped(self):
        raise TrainingInterrupted("training interrupted at epoch 1, batch 3; resumable checkpoint last.pt",
                                  Path("last.pt"), signal.SIGTERM)

    monkeypatch.setattr(trainer_module.Trainer, "fit", stopped)
    code = main(["train", "--project", str(tmp_path), "--epochs", "1", "--set", "run.progress=false"])
    assert code == 128 + signal.SIGTERM
    assert "resumable checkpoint last.pt" in capsys.readouterr().err
