"""The task-agnostic training engine: loop, optimisation, checkpoints, logging, distribution."""
