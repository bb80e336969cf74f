"""The training recipe of ``alp run``: set up data, set up the model, train, save, evaluate.

Flat on purpose, like a torchtune recipe: each phase is a short function and :func:`run`
reads top to bottom. The same code runs in one process or on every rank of a distributed job
(``train.nproc``, torchrun, the DeepSpeed launcher); only rank 0 writes the run folder.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from alp_core import ConfigError
from alp_core.errors import DataError
from alp_data.collate import Collator
from alp_data.dataset import AudioCaptionDataset, BadClip
from alp_data.deferred import FeaturesOnDevice
from alp_data.features import Fbank, SpecAugment, SpecAugmentConfig
from alp_data.loader import (
    SKIPPED_CLIPS_FILE,
    BadClipBudget,
    BadClipBudgetExceeded,
    build_loader,
    set_loader_epoch,
    write_skipped_jsonl,
)
from alp_data.manifest import ManifestEntry, read_manifest
from alp_data.transform import ClipTransform
from alp_eval.report import build_report, render_markdown, write_report
from alp_eval.suite import caption_samples, evaluate
from alp_models.assembly import build_audio_text_model, component_seed
from alp_models.configs import ProjectionConfig
from alp_objectives.base import Objective, as_objective
from alp_objectives.distributed import gather_sizes
from alp_train.checkpoint import Checkpointer, Progress, save_model
from alp_train.config import ResolvedRun
from alp_train.distributed import (
    DistInfo,
    broadcast_object,
    dist_info_from_env,
    gather_objects,
    init_distributed,
)
from alp_train.engines.base import Engine
from alp_train.flops import count_step_flops
from alp_train.gradcache import check_per_sample
from alp_train.loop import TrainPlan, TrainSummary, train_loop
from alp_train.metrics_log import MetricsLog, NullLog
from alp_train.optim.groups import optimizer_groups
from alp_train.signals import StopFlag
from alp_train.task import TrainTask

__all__ = ["RunData", "new_run_dir", "run", "setup_data", "setup_model"]

log = logging.getLogger("alp")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def new_run_dir(cfg: Any) -> Path:
    """A fresh folder for this run; an existing non-empty folder is never overwritten."""
    base = Path(cfg.output_dir or f"runs/{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    path, n = base, 1
    while path.exists() and any(path.iterdir()):
        path = base.with_name(f"{base.name}-{n}")
        n += 1
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_config(resolved: ResolvedRun, run_dir: Path) -> None:
    (run_dir / "config.yaml").write_text(yaml.safe_dump(resolved.dump(), sort_keys=False))


# -- data --------------------------------------------------------------------------------------
@dataclass
class RunData:
    """The prepared corpus and what turns its clips into batches: manifest entries per split
    (map-style loading), or shard indexes per split (streaming, ``data.source.name=shards``)."""

    train_entries: list[ManifestEntry]
    test_entries: list[ManifestEntry]
    fbank: Fbank
    collator: Collator
    seconds: float
    shards: dict[str, Any] | None = None
    bad_rows: list[Any] = field(default_factory=list)

    def clips(self, split: str) -> int:
        if self.shards is not None:
            return int(self.shards[split].clips)
        return len(self.train_entries if split == "train" else self.test_entries)

    def audio_seconds(self, split: str) -> float:
        if self.shards is not None:
            return float(self.shards[split].seconds)
        entries = self.train_entries if split == "train" else self.test_entries
        return float(sum(e.duration for e in entries))

    def clipped_seconds(self, split: str, max_seconds: float) -> float:
        """Seconds of audio an epoch of ``split`` carries with clips cut to ``max_seconds``."""
        if self.shards is not None:
            return float(sum(min(d, max_seconds) for s in self.shards[split].shards
                             for d in s.durations))
        entries = self.train_entries if split == "train" else self.test_entries
        return float(sum(min(e.duration, max_seconds) for e in entries))

    def loader(self, cfg: Any, split: str, info: DistInfo, *, train: bool,
               batch_size: int, sharded: bool) -> Any:
        """A loader over ``split``; ``sharded`` gives each rank its share (training)."""
        audio = cfg.data.audio
        if train:
            audio = audio.model_copy(update={"max_seconds": cfg.data.train_max_seconds})
        augment = spec_augment(cfg.data.spec_augment) if train else None
        rank, world = (info.rank, info.world_size) if sharded else (0, 1)
        max_seconds = cfg.data.max_batch_seconds if train else None
        defer = cfg.data.features_on == "device"
        loader: Any
        if self.shards is not None:
            from alp_data.shards.plan import PlanConfig
            from alp_data.shards.stream import build_stream_loader

            transform = ClipTransform(audio=audio, fbank=self.fbank, train=train,
                                      seed=cfg.seed, spec_augment=augment, defer_features=defer)
            plan = PlanConfig(batch_size=batch_size, max_batch_seconds=max_seconds,
                              shuffle=train, drop_last=train, seed=cfg.seed,
                              shuffle_buffer=int(cfg.data.source.get("shuffle_buffer", 1000)),
                              min_seconds=audio.min_seconds, max_seconds=audio.max_seconds)
            loader = build_stream_loader(self.shards[split], transform, self.collator,
                                         plan=plan, rank=rank, world_size=world,
                                         num_workers=cfg.data.num_workers,
                                         pin_memory=info.device.type == "cuda")
        else:
            entries = self.train_entries if split == "train" else self.test_entries
            dataset = AudioCaptionDataset(entries, audio=audio, fbank=self.fbank, train=train,
                                          seed=cfg.seed, spec_augment=augment,
                                          defer_features=defer)
            loader = build_loader(
                dataset, batch_size=batch_size, shuffle=train,
                num_workers=cfg.data.num_workers, collator=self.collator, seed=cfg.seed,
                drop_last=train, max_batch_seconds=max_seconds, rank=rank, world_size=world,
                pin_memory=info.device.type == "cuda")
        # workers only decode: the batch's features are computed on the run's device
        return FeaturesOnDevice(loader, self.fbank, info.device) if defer else loader


def spec_augment(option: Any) -> SpecAugment | None:
    """``data.spec_augment``: true (the defaults), false, or a SpecAugmentConfig."""
    if option is True:
        return SpecAugment()
    if isinstance(option, SpecAugmentConfig):
        return SpecAugment(option)
    return None


def setup_data(resolved: ResolvedRun, info: DistInfo, model: Any) -> RunData:
    """Prepare the corpus (rank 0; the others wait and read the cache) and the collator."""
    cfg = resolved.config
    t0 = time.perf_counter()
    source = resolved.source.build()
    source_dir = Path(cfg.data.cache_dir) / f"{resolved.source.record.name}-{_digest(resolved)}"
    manifests = source.prepare(source_dir) if info.is_main else None
    manifests = broadcast_object(manifests, info)
    if not info.is_main:
        manifests = source.prepare(source_dir)  # finds rank 0's files in the cache
    fbank = Fbank(cfg.data.fbank)
    collator = Collator(model.tokenizer, num_mel_bins=cfg.data.fbank.num_mel_bins,
                        caption_tokenizer=model.caption_tokenizer)
    if getattr(source, "streams", False):
        from alp_data.shards.index import open_shards

        shards = {split: open_shards(str(spec)) for split, spec in manifests.items()}
        return RunData([], [], fbank, collator, time.perf_counter() - t0, shards=shards)
    bad_rows: list[Any] = []
    limit = cfg.data.max_bad_rows
    return RunData(read_manifest(manifests["train"], max_bad_rows=limit, bad_rows=bad_rows),
                   read_manifest(manifests["test"], max_bad_rows=limit, bad_rows=bad_rows),
                   fbank, collator, time.perf_counter() - t0, bad_rows=bad_rows)


# -- model ----------------------------------------------------------------------------------
def setup_model(resolved: ResolvedRun) -> tuple[Any, Objective]:
    """The objective, and a model holding just the parts that produce what it reads.

    Captioning objectives are built with the caption decoder's token ids, so the model (with
    its decoder) comes first; which parts it needs is read from the objective's declaration.
    """
    cfg = resolved.config
    model = build_audio_text_model(
        seed=cfg.seed, audio_encoder=resolved.audio_encoder, text_encoder=resolved.text_encoder,
        caption_decoder=resolved.caption_decoder,
        projection=ProjectionConfig(embed_dim=cfg.model.embed_dim,
                                    hidden_dim=cfg.model.projection_hidden),
        needs=objective_needs(resolved), pooler=cfg.model.pooler,
        input_dim=cfg.data.fbank.num_mel_bins)
    objective = as_objective(resolved.objective.build(
        special_ids=getattr(model.caption_decoder, "special_ids", None)))
    init = cfg.model.init_from
    if init is not None:
        from alp_models.weights import load_part

        report = load_part(model, init.path, init.part, init.strict)
        log.info("model.init_from: %s", report.describe())
    return model, objective


def objective_needs(resolved: ResolvedRun) -> frozenset[str]:
    """The model outputs the run's objective reads (built with placeholder token ids)."""
    ids = {"bos_id": 1, "eos_id": 2, "pad_id": 0, "mask_id": 3, "vocab_size": 8}
    return as_objective(resolved.objective.build(special_ids=ids)).requires


def build_engine(resolved: ResolvedRun, info: DistInfo) -> Engine:
    cfg = resolved.config
    if info.distributed and resolved.engine.record.name == "single":
        raise ConfigError(f"train.engine: 'single' runs one process, but {info.world_size} "
                          "were started; use train.engine.name=ddp or deepspeed")
    return resolved.engine.build(train=cfg.train, dist=info, micro_batch=cfg.data.batch_size)


# -- the run ----------------------------------------------------------------------------------
def run(resolved: ResolvedRun, run_dir: str | Path | None = None, resume: bool = False,
        echo: Any = print) -> Path:
    """Execute one validated run on this process (one rank of many, or alone).

    ``run_dir``: an existing run folder (launchers and ``--resume`` pass it); otherwise rank 0
    makes a new one. With ``resume`` training continues from its latest checkpoint.
    """
    cfg = resolved.config
    info = dist_info_from_env(cfg.train.device)
    init_distributed(info)
    say = echo if info.is_main else (lambda *a, **k: None)
    try:
        return _run(resolved, info, run_dir, resume, say)
    finally:
        if info.distributed and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _run(resolved: ResolvedRun, info: DistInfo, run_dir: str | Path | None, resume: bool,
         say: Any) -> Path:
    cfg = resolved.config
    path = prepare_run_dir(resolved, info, run_dir)
    say(f"run folder: {path}" + (f" ({info.world_size} processes)" if info.distributed else ""))
    seed_everything(cfg.seed)  # the same on every rank: identical initial weights

    model, objective = setup_model(resolved)
    if cfg.train.grad_cache.chunk_size:
        check_per_sample(model)  # before any data is prepared
    data = setup_data(resolved, info, model)
    say(f"data: {data.clips('train')} train / {data.clips('test')} test clips "
        f"({data.audio_seconds('train') / 3600:.2f} h of training audio"
        f"{', streamed from shards' if data.shards is not None else ''}; {data.seconds:.1f} s)")
    _describe(model, resolved, objective, say)
    if cfg.data.features_on == "device" and info.device.type == "cpu" and info.is_main:
        log.warning("data.features_on=device on the CPU: the main process computes every "
                    "batch's fbank alone while the loader workers only decode; this is meant "
                    "for accelerators (data.features_on=worker is faster here)")

    task = TrainTask(model, objective)
    train_loader = data.loader(cfg, "train", info, train=True, batch_size=cfg.data.batch_size,
                               sharded=True)
    plan = _plan(cfg, len(train_loader), data)
    engine = setup_engine(resolved, info, task, plan)
    checkpointer = Checkpointer(path, engine, info, cfg.train.checkpoint.keep_last,
                                getattr(engine.config, "gather_on_save", True))
    budget = BadClipBudget(cfg.data.max_bad_clips)
    progress = restore(checkpointer, budget, info, cfg.seed, resume, say)

    mlog = MetricsLog(path / "metrics.jsonl", cfg.train.tensorboard,
                      resumed_at=progress.step if resume else None) if info.is_main \
        else NullLog()
    with mlog:
        mlog.write("resume" if resume else "start", config=cfg.name, device=str(info.device),
                   world_size=info.world_size, engine=engine.name,
                   parameters=sum(p.numel() for p in model.parameters()),
                   train_clips=data.clips("train"), test_clips=data.clips("test"),
                   step=progress.step)
        try:
            summary = train(engine, task, train_loader, plan, progress, checkpointer, mlog,
                            budget, data, cfg, info)
        except BadClipBudgetExceeded:  # every rank at the same step: gather the lists
            clips = [BadClip(**c) for c in _every_rank_skipped(budget, info)]
            if info.is_main:
                write_skipped_jsonl(path / SKIPPED_CLIPS_FILE, clips, data.bad_rows)
            raise
        except DataError:  # another data error on this rank: its own list stays
            if info.is_main:
                write_skipped_jsonl(path / SKIPPED_CLIPS_FILE, budget.skipped, data.bad_rows)
            raise
        # the last collectives: every rank's weights shard and skipped clips
        state = engine.full_state_dict()
        skipped = _every_rank_skipped(budget, info)
        if not info.is_main:
            return path  # rank 0 alone saves and evaluates; nobody waits for it
        report = save_and_evaluate(resolved, state or {}, objective, data, info, budget,
                                   summary, progress, path, skipped, mlog, say)
    say("")
    say(render_markdown(report))
    say(f"report: {path / 'report.md'}  (json: {path / 'report.json'})")
    return path


def prepare_run_dir(resolved: ResolvedRun, info: DistInfo, run_dir: str | Path | None) -> Path:
    """Rank 0 makes (or reuses) the run folder and writes config.yaml; every rank learns it."""
    path = None
    if info.is_main:
        path = Path(run_dir) if run_dir is not None else new_run_dir(resolved.config)
        path.mkdir(parents=True, exist_ok=True)
        if not (path / "config.yaml").is_file():
            write_config(resolved, path)
    return Path(broadcast_object(str(path) if path is not None else None, info))


def setup_engine(resolved: ResolvedRun, info: DistInfo, task: TrainTask, plan: TrainPlan
                 ) -> Engine:
    """The configured engine around ``task``, with the optimizer and schedule by name."""
    cfg = resolved.config
    engine = build_engine(resolved, info)
    group_lrs = {"text": cfg.train.text_lr} if cfg.train.text_lr else None
    engine.setup(
        task,
        lambda module: resolved.optimizer.build(
            param_groups=optimizer_groups({"task": module}, cfg.train.lr, group_lrs),
            lr=cfg.train.lr),
        lambda optimizer: resolved.schedule.build(
            optimizer=optimizer, total_steps=max(plan.total_steps, 1),
            steps_per_epoch=max(plan.steps_per_epoch, 1)))
    return engine


def _every_rank_skipped(budget: BadClipBudget, info: DistInfo) -> list[dict[str, Any]]:
    """Every rank's skipped clips, each once (a resumed run gives every rank the clips its
    checkpoint listed, and a clip may fail on two ranks in different epochs); a collective."""
    distinct: dict[tuple[str, str], dict[str, Any]] = {}
    for rank in gather_objects([asdict(c) for c in budget.skipped], info):
        for clip in rank:
            distinct.setdefault((str(clip.get("id")), str(clip.get("path"))), clip)
    return list(distinct.values())


def restore(checkpointer: Checkpointer, budget: BadClipBudget, info: DistInfo, seed: int,
            resume: bool, say: Any) -> Progress:
    """Fresh progress, or the newest checkpoint's (weights, optimizer, RNG, data position)."""
    if not resume:  # dropout & co. draw from a stream of each rank's own (a resume restores it)
        torch.manual_seed(component_seed(seed, f"train-rank-{info.rank}"))
        return Progress()
    latest = checkpointer.latest()
    if latest is None:
        raise ConfigError(f"--resume: {checkpointer.root} holds no complete checkpoint")
    progress = checkpointer.load(latest)
    budget.update([BadClip(**c) for c in progress.skipped_clips])  # type: ignore[arg-type]
    say(f"resumed from {latest.name}: step {progress.step}, epoch {progress.epoch}, "
        f"batch {progress.batches_in_epoch} of the epoch")
    return progress


def save_and_evaluate(resolved: ResolvedRun, state: dict[str, Any], objective: Objective,
                      data: RunData, info: DistInfo, budget: BadClipBudget,
                      summary: TrainSummary, progress: Progress, path: Path,
                      skipped: list[dict[str, Any]], mlog: MetricsLog, say: Any
                      ) -> dict[str, Any]:
    """Rank 0: the final weights, the train_end record, and the frozen-encoder evaluation."""
    save_model(path / "checkpoint", state,
               {"config": resolved.dump(), "state": {"step": summary.steps,
                                                     "epoch": progress.epoch}})
    # rates over this session's work (a resumed run's earlier steps took their own time)
    rate = summary.session_samples / max(summary.seconds, 1e-9)
    mlog.write("train_end", steps=summary.steps, samples=summary.samples,
               session_samples=summary.session_samples,
               seconds=round(summary.seconds, 2), final_loss=summary.final_loss,
               samples_per_s=round(rate, 2),
               audio_hours_per_s=round(summary.session_audio_seconds / 3600
                                       / max(summary.seconds, 1e-9), 5),
               skipped_clips=len(skipped), skipped_batches=progress.skipped_batches)
    say(f"trained {summary.steps} steps in {summary.seconds:.1f} s ({rate:.1f} samples/s), "
        f"final loss {summary.final_loss:.3f}")
    # evaluate a plain copy holding the gathered weights (a sharded engine's own model would
    # wait for the other ranks at every forward)
    trained = setup_model(resolved)[0]
    trained.load_state_dict({k[len("model."):]: v for k, v in state.items()
                             if k.startswith("model.")})
    report = evaluate_run(resolved, trained, objective, data, info, budget, summary, path,
                          skipped)
    mlog.write("eval_end", seconds=report["meta"]["timings_s"].get("eval_s"),
               summary=report.get("summary", {}))
    return report


def _plan(cfg: Any, micro_batches: int, data: RunData | None = None) -> TrainPlan:
    """How long to train: epochs, ``train.max_steps``, and ``train.max_audio_hours``, which
    also caps the step count the schedule plans with (estimated from the training split's
    seconds per optimizer step; the loop stops on the audio actually seen)."""
    frame_shift = cfg.data.fbank.frame_shift_ms / 1000
    max_steps, budget = cfg.train.max_steps, None
    if cfg.train.max_audio_hours is not None and data is not None:
        budget = cfg.train.max_audio_hours * 3600
        steps_per_epoch = max(micro_batches // cfg.train.grad_accum_steps, 1)
        limit = cfg.data.train_max_seconds
        per_epoch = data.clipped_seconds("train", limit)
        estimate = max(1, math.ceil(budget / max(per_epoch / steps_per_epoch, 1e-9)))
        max_steps = estimate if max_steps is None else min(max_steps, estimate)
    return TrainPlan(
        epochs=cfg.train.epochs, micro_batches_per_epoch=micro_batches,
        accum=cfg.train.grad_accum_steps, max_steps=max_steps, max_audio_seconds=budget,
        log_every=cfg.train.log_every, checkpoint_every_steps=cfg.train.checkpoint.every_steps,
        checkpoint_every_epochs=cfg.train.checkpoint.every_epochs,
        grad_cache_chunk=cfg.train.grad_cache.chunk_size,
        validate_every=cfg.train.validate_every, seconds_per_frame=frame_shift)


def train(engine: Engine, task: TrainTask, loader: Any, plan: TrainPlan, progress: Progress,
          checkpointer: Checkpointer, mlog: MetricsLog, budget: BadClipBudget, data: RunData,
          cfg: Any, info: DistInfo) -> TrainSummary:
    """Run the loop with preemption handling and the optional validation loss."""
    def on_skipped(clips: list[Any]) -> bool:
        budget.update(clips, check=False)  # the loop stops every rank together when over
        progress.skipped_clips = [asdict(c) for c in budget.skipped]
        return budget.over

    validate = None
    if cfg.train.validate_every:
        val_loader = data.loader(cfg, "test", info, train=False, batch_size=cfg.data.batch_size,
                                 sharded=True)
        validate = lambda: validation_loss(  # noqa: E731
            engine, task, val_loader, on_skipped=on_skipped)

    def over_budget(local: bool) -> None:
        if local:
            raise BadClipBudgetExceeded(budget.over_budget_message())
        raise BadClipBudgetExceeded(
            f"rank {info.rank} stops with the others: another rank's bad clips are over "
            f"data.max_bad_clips ({budget.max_bad}); every rank's skipped clips are listed in "
            f"{SKIPPED_CLIPS_FILE} in the run folder")

    stop = StopFlag().install()
    try:
        return train_loop(
            engine, task, loader, plan, progress, checkpointer, mlog,
            on_batch_skipped=on_skipped, set_epoch=lambda e: set_loader_epoch(loader, e),
            stop=stop, validate=validate, show_progress=cfg.train.progress,
            on_over_budget=over_budget,
            # counting costs a step with a dispatch mode; the figure matters on a GPU
            flop_counter=count_step_flops if engine.device.type == "cuda" else None)
    finally:
        stop.restore()


@torch.no_grad()
def validation_loss(engine: Engine, task: TrainTask, loader: Any,
                    on_skipped: Callable[[list[Any]], Any] | None = None) -> tuple[float, int]:
    """Mean loss over the held-out clips (every rank its share), in eval mode, and the number
    of clips it averages over (all ranks). NaN when no batch could be scored.

    The loader shards without dropping clips (ranks get equal batch counts); a batch is left
    out only where some rank holds fewer clips than the objective needs (every rank agrees,
    since a contrastive forward gathers across ranks). Bad clips met are passed to
    ``on_skipped`` (the run's bad-clip budget), as in training.
    """
    task.eval()
    weighted = engine.dist.distributed and bool(getattr(task, "rank_weighted", False))
    total, count = 0.0, 0.0
    try:
        set_loader_epoch(loader, 0)
        for batch in loader:
            if on_skipped is not None and batch.get("skipped"):
                on_skipped(batch["skipped"])
            # every rank's size (agreed: a contrastive forward gathers across ranks); a batch
            # is left out where it holds fewer clips than the objective needs: globally for an
            # objective that weights ranks (it gathers: one clip on a rank is enough), on
            # every rank otherwise
            sizes = gather_sizes(len(batch["ids"]), engine.device)
            if (min(sizes) < 1 or sum(sizes) < task.min_batch) if weighted else \
                    min(sizes) < task.min_batch:
                continue
            with engine.autocast():
                out = task(task.prepare(batch, engine.device))
            # a weighted objective's rank mean is the global batch's loss: each rank adds
            # its share of that batch's clips; a plain per-rank mean counts its own clips
            share = sum(sizes) / len(sizes) if weighted else len(batch["ids"])
            total += float(out.loss) * share
            count += share
    finally:
        task.train()
    sums = engine.reduce_metrics({"total": total, "count": count})
    clips = round(sums["count"] * engine.dist.world_size)  # reduce_metrics gives the mean
    return (sums["total"] / sums["count"] if sums["count"] > 0 else math.nan), clips


def evaluate_run(resolved: ResolvedRun, model: Any, objective: Objective, data: RunData,
                 info: DistInfo,
                 budget: BadClipBudget, summary: TrainSummary, path: Path,
                 skipped: list[dict[str, Any]]) -> dict[str, Any]:
    """Frozen-encoder evaluation of the trained and (optionally) the random-init model."""
    cfg = resolved.config
    t0 = time.perf_counter()
    device = info.device
    tasks = [t.build() for t in resolved.eval_tasks]
    single = DistInfo(device=device)
    loaders = {split: data.loader(cfg, split, single, train=False,
                                  batch_size=cfg.eval.batch_size, sharded=False)
               for split in ("train", "test")}
    models = {"pretrained": model}
    if cfg.eval.baseline:  # the same seeds (and init_from) rebuild the exact initial weights
        label = "random-init" if cfg.model.init_from is None else "initial"
        models[label] = setup_model(resolved)[0]
    notes: dict[str, str] = {}  # tasks that skip say why (e.g. captioning without a decoder)
    results = {label: evaluate(m, tasks, loaders, device=device, seed=cfg.seed,
                               batch_size=cfg.eval.batch_size, on_skipped=budget.update,
                               notes=notes)
               for label, m in models.items()}
    if model.text_encoder is None:
        notes["retrieval"] = ("skipped: the model has no text tower (objective "
                              f"{resolved.objective.record.name}), so no joint space")
    samples = (caption_samples(model, loaders["test"], device)
               if model.caption_decoder is not None else [])
    seen = {(c["id"], c["path"]) for c in skipped}
    skipped += [asdict(c) for c in budget.skipped if (c.id, c.path) not in seen]
    report = build_report(results, {
        "run": cfg.name, "run_dir": str(path), "seed": cfg.seed,
        "objective": resolved.objective.record.name,
        "model_reads": sorted(objective.requires),
        "engine": resolved.engine.record.name, "world_size": info.world_size,
        **({"notes": notes} if notes else {}),
        **({"caption_samples": samples} if samples else {}),
        "train_steps": summary.steps, "skipped_clips": len(skipped),
        "skipped_paths": [c["path"] for c in skipped],
        "timings_s": {"data_prepare_s": round(data.seconds, 2),
                      "train_s": round(summary.seconds, 2),
                      "eval_s": round(time.perf_counter() - t0, 2)},
    })
    write_report(report, path)
    write_skipped_jsonl(path / SKIPPED_CLIPS_FILE, skipped, data.bad_rows)
    return report


def _describe(model: Any, resolved: ResolvedRun, objective: Objective, say: Any) -> None:
    n = sum(p.numel() for p in model.parameters())
    parts = [f"{name.replace('_', ' ')} {sum(p.numel() for p in part.parameters()) / 1e6:.2f} M"
             for name, part in (("audio_encoder", model.audio_encoder),
                                ("text_encoder", model.text_encoder),
                                ("caption_decoder", model.caption_decoder)) if part is not None]
    say(f"model: {n / 1e6:.2f} M parameters ({', '.join(parts)}); objective "
        f"{resolved.objective.record.name} reads {', '.join(sorted(objective.requires))}")


def _digest(resolved: ResolvedRun) -> str:
    import hashlib

    spec = json.dumps(resolved.dump()["data"]["source"], sort_keys=True)
    return hashlib.sha1(spec.encode()).hexdigest()[:10]
