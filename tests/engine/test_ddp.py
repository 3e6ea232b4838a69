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


def _worker(rank: int, world_size: int, ports: tuple[int, int], project: str, queue) -> None:
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(ports[0]),
    )
    import torch

    torch.set_num_threads(1)
    from cvzoo.engine.trainer import Trainer
    from tests.engine.toy_task import ToyTask, ToyTwoOptimizerTask

    config = apply_overrides(Config(), [
        f"run.project={project}", "run.name=ddp", "run.progress=false", "run.tensorboard=false",
        "run.plots=false", "data.batch_size=16", "data.workers=0", "optim.lr=0.1", "train.epochs=2",
        "train.device=cpu", "train.sync_bn=true",
    ])
    result = Trainer(config, ToyTask(config, n_val=63)).fit()
    # Then, in the same processes (a second process group, on its own port), a task with two optimizers
    # whose steps each use part of the one DDP-wrapped module; every rank reports its own weights (as a
    # plain list: a tensor sent through the queue needs its sender alive to be read).
    os.environ["MASTER_PORT"] = str(ports[1])
    gan_config = apply_overrides(config, ["run.name=ddp_gan"])
    gan_task = ToyTwoOptimizerTask(gan_config, n_val=63)
    gan = Trainer(gan_config, gan_task).fit()
    weights = torch.cat([p.detach().flatten() for p in gan_task.model.parameters()]).tolist()
    queue.put((rank, result.metrics["metrics/count"], result.metrics["metrics/acc"], str(result.run_dir),
               gan.metrics["metrics/count"], weights, str(gan.run_dir)))


def test_two_process_gloo_training(tmp_path):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    ports = (_free_port(), _free_port())
    procs = [ctx.Process(target=_worker, args=(r, 2, ports, str(tmp_path), queue)) for r in range(2)]
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
    # Two optimizers: the ranks (different seeds, different shards) end with the same weights, so DDP
    # averaged the gradients of both parts; the checkpoint holds both optimizers.
    assert [r[4] for r in results] == [63, 63]
    assert results[0][5] == results[1][5] and results[0][6] == results[1][6]
    state = load_checkpoint(os.path.join(results[0][6], "weights", "last.pt"))
    assert state["epoch"] == 2 and set(state["optimizer"]) == {"discriminator", "generator"}
