"""A pretraining run: the objects a config names, built (:mod:`simxir.train.assemble`) and trained."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from simxir.errors import UserError
from simxir.methods import METHODS
from simxir.progress import log
from simxir.rundir import own_run_folder
from simxir.train.assemble import build_model, open_run_data
from simxir.train.config import TrainConfig
from simxir.train.engine import EpochCallback, Evaluator, train
from simxir.train.plan import resolve_length


def run_pretrain(cfg: TrainConfig, out: str | Path, resume: bool = False,
                 callbacks: tuple[EpochCallback, ...] = (),
                 evaluator: Callable[[TrainConfig, Any, Any], Evaluator | None] | None = None,
                 overwrite: bool = False) -> dict[str, Any]:
    """Load data, build backbone + augment + method from ``cfg`` (seeded), and train in the run
    folder ``out``, which the run owns while it lives (:func:`simxir.rundir.own_run_folder`;
    ``overwrite`` replaces an earlier run's outputs there).

    ``evaluator``: ``fn(cfg, dataset, augment)`` giving the engine's epoch evaluator (or None), e.g.
    :func:`simxir.protocol.monitor.knn_monitor`."""
    with own_run_folder(out, resume=resume, overwrite=overwrite):
        return _run_pretrain(cfg, out, resume, callbacks, evaluator)


def _run_pretrain(cfg: TrainConfig, out: str | Path, resume: bool, callbacks: tuple[EpochCallback, ...],
                  evaluator: Callable[[TrainConfig, Any, Any], Evaluator | None] | None) -> dict[str, Any]:
    if METHODS[cfg.method_name].fine_tunes:
        raise UserError(f"--method {cfg.method_name}: fine-tunes an existing encoder; run "
                        f"simxir finetune --encoder CKPT --data SPEC")
    run = open_run_data(cfg, out)
    method = build_model(cfg)
    if cfg.eval_data and cfg.monitor.knn_every == 0:   # asked for evaluation: at least after the last epoch
        cfg = resolve_length(cfg, len(run.dataset.train))
        cfg = dataclasses.replace(cfg, monitor=dataclasses.replace(cfg.monitor, knn_every=cfg.epochs))
    if not run.dataset.labelled and not cfg.eval_data:
        log(f"data {cfg.data}: unlabelled, so no online probe and no kNN monitor (--eval-data SPEC "
            f"evaluates on a labelled dataset)")
    ev = evaluator(cfg, run.evaluation, run.augment) if evaluator is not None else None
    return train(cfg, method, run.dataset, run.augment, out, resume=resume, callbacks=callbacks,
                 evaluator=ev, device=run.device)
