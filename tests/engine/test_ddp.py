"""Two CPU processes with the gloo backend, as `torchrun --nproc_per_node 2` would start them."""

import os
import socket

import torch.multiprocessing as mp

from cvzoo.config import Config, apply_overrides
from cvzoo.engine.checkpoint import load_checkpoint


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, project: str, queue) -> None:
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
    )
    import torch

    torch.set_num_threads(1)
    from cvzoo.engine.trainer import Trainer
    from tests.engine.toy_task import ToyTask

    config = apply_overrides(Config(), [
        f"run.project={project}", "run.name=ddp", "run.progress=false", "run.tensorboard=false",
        "run.plots=false", "data.batch_size=16", "data.workers=0", "optim.lr=0.1", "train.epochs=2",
        "train.device=cpu", "train.sync_bn=true",
    ])
    result = Trainer(config, ToyTask(config, n_val=63)).fit()
    queue.put((rank, result.metrics["metrics/count"], result.metrics["metrics/acc"], str(result.run_dir)))


def test_two_process_gloo_training(tmp_path):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, 2, port, str(tmp_path), queue)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
        assert p.exitcode == 0
    results = sorted(queue.get(timeout=10) for _ in range(2))
    # Both ranks report the metrics of the whole validation set (63 samples, odd on purpose: no
    # sample is counted twice), and agree on the run folder and the numbers.
    assert [r[1] for r in results] == [63, 63]
    assert results[0][2] == results[1][2]
    assert results[0][3] == results[1][3]
    state = load_checkpoint(os.path.join(results[0][3], "weights", "last.pt"))
    assert state["epoch"] == 2
    assert not any(k.startswith("module.") for k in state["model"])  # saved unwrapped
