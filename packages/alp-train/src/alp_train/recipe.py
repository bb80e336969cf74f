"""``alp run``: prepare data, pretrain, save, evaluate the frozen encoder, report.

Flat on purpose (setup / train / save / evaluate), like a recipe one can read top to bottom.
"""

from __future__ import annotations

import copy
import logging
import random
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from alp_cli.checkpoint import save_checkpoint
from alp_cli.config import ResolvedRun
from alp_cli.engine.single import SingleProcessEngine
from alp_cli.metrics_log import MetricsLog
from alp_core import ConfigError
from alp_data.collate import Collator
from alp_data.dataset import AudioCaptionDataset
from alp_data.features import Fbank, SpecAugment
from alp_data.loader import BadClipBudget, build_loader, set_loader_epoch
from alp_data.manifest import read_manifest
from alp_eval.context import EvalContext
from alp_eval.extract import extract_embeddings
from alp_eval.report import build_report, render_markdown, write_report
from alp_models.configs import ProjectionConfig
from alp_models.two_tower import AudioTextModel
from alp_objectives.base import Objective, as_objective

log = logging.getLogger("alp")

DECODER_SEED_OFFSET = 7919
"""The caption decoder is initialised from ``seed + DECODER_SEED_OFFSET`` (see build_model)."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        from alp_core import ConfigError

        raise ConfigError("train.device: 'cuda' was asked for but no GPU is visible; "
                          "accepted: auto, cpu, cuda")
    return torch.device(name)


def new_run_dir(cfg: Any) -> Path:
    """A fresh folder for this run; an existing non-empty folder is never overwritten."""
    base = Path(cfg.output_dir or f"runs/{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    path, n = base, 1
    while path.exists() and any(path.iterdir()):
        path = base.with_name(f"{base.name}-{n}")
        n += 1
    path.mkdir(parents=True, exist_ok=True)
    return path


def budgeted(loader: Iterable[dict[str, Any]], budget: BadClipBudget) -> Iterator[dict[str, Any]]:
    """Count the clips each batch skipped against the budget, then pass the batch on."""
    for batch in loader:
        budget.update(batch.get("skipped", []))
        yield batch


def build_model(resolved: ResolvedRun) -> tuple[AudioTextModel, Objective]:
    """The objective, and a model holding just the parts that produce what it reads.

    The text tower is built for objectives reading text embeddings, the caption decoder for
    those reading caption logits (CoCa: both). The decoder is built first because captioning
    takes its token ids from the decoder's tokenizer.
    """
    cfg = resolved.config
    audio_encoder = resolved.audio_encoder.build()
    # The decoder draws its initial weights from a seed of its own, so building it (even when
    # the objective turns out not to need it) leaves the rest of the run's random stream as is.
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed + DECODER_SEED_OFFSET)
        decoder = resolved.caption_decoder.build(memory_dim=int(audio_encoder.output_dim))
    objective = as_objective(resolved.objective.build(
        special_ids=getattr(decoder, "special_ids", None)))
    needs = objective.requires
    if not needs & {"text_embeds", "caption_logits"}:
        raise ConfigError(f"objective {resolved.objective.record.name!r} reads {sorted(needs)}; "
                          "alp run trains a text tower (text_embeds) and/or a caption decoder "
                          "(caption_logits)")
    text_encoder = resolved.text_encoder.build() if "text_embeds" in needs else None
    model = AudioTextModel(
        audio_encoder, text_encoder,
        ProjectionConfig(embed_dim=cfg.model.embed_dim, hidden_dim=cfg.model.projection_hidden),
        caption_decoder=decoder if "caption_logits" in needs else None)
    return model, objective


def run(resolved: ResolvedRun, echo=print) -> Path:
    """Execute one validated run; returns the run folder."""
    cfg = resolved.config
    seed_everything(cfg.seed)
    device = pick_device(cfg.train.device)
    run_dir = new_run_dir(cfg)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(resolved.dump(), sort_keys=False))
    echo(f"run folder: {run_dir}")
    timings: dict[str, float] = {}

    # -- data ------------------------------------------------------------------------------
    t0 = time.perf_counter()
    source = resolved.source.build()
    source_dir = Path(cfg.data.cache_dir) / f"{resolved.source.record.name}-{_digest(resolved)}"
    manifests = source.prepare(source_dir)
    train_entries = read_manifest(manifests["train"])
    test_entries = read_manifest(manifests["test"])
    timings["data_prepare_s"] = time.perf_counter() - t0
    echo(f"data: {len(train_entries)} train / {len(test_entries)} test clips "
         f"({timings['data_prepare_s']:.1f} s)")

    # -- model and objective ---------------------------------------------------------------
    model, objective = build_model(resolved)
    needs = objective.requires
    baseline = copy.deepcopy(model) if cfg.eval.baseline else None
    n_params = sum(p.numel() for p in model.parameters())
    parts = [f"{name.replace('_', ' ')} {_millions(part)}"
             for name, part in (("audio_encoder", model.audio_encoder),
                                ("text_encoder", model.text_encoder),
                                ("caption_decoder", model.caption_decoder)) if part is not None]
    echo(f"model: {n_params / 1e6:.2f} M parameters ({', '.join(parts)}); "
         f"objective {resolved.objective.record.name} reads {', '.join(sorted(needs))}")

    fbank = Fbank(cfg.data.fbank)
    collator = Collator(model.tokenizer, num_mel_bins=cfg.data.fbank.num_mel_bins,
                        caption_tokenizer=model.caption_tokenizer)
    budget = BadClipBudget(cfg.data.max_bad_clips)
    train_audio = cfg.data.audio.model_copy(update={"max_seconds": cfg.data.train_max_seconds})
    train_set = AudioCaptionDataset(
        train_entries, audio=train_audio, fbank=fbank, train=True, seed=cfg.seed,
        spec_augment=SpecAugment() if cfg.data.spec_augment else None)
    train_loader = build_loader(
        train_set, batch_size=cfg.data.batch_size, shuffle=True, num_workers=cfg.data.num_workers,
        collator=collator, seed=cfg.seed, drop_last=True,
        max_batch_seconds=cfg.data.max_batch_seconds)

    # -- train ------------------------------------------------------------------------------
    with MetricsLog(run_dir / "metrics.jsonl") as mlog:
        mlog.write("start", config=cfg.name, device=str(device), parameters=n_params,
                   train_clips=len(train_entries), test_clips=len(test_entries))
        engine = SingleProcessEngine(cfg.train, device, mlog)

        def save(epoch: int, step: int) -> None:
            save_checkpoint(run_dir / "checkpoint", {"model": model, "objective": objective},
                            resolved.dump(), {"epoch": epoch, "step": step})

        summary = engine.fit(model, objective, train_loader, len(train_loader),
                             on_batch_skipped=budget.update, on_epoch_end=save,
                             set_epoch=lambda epoch: set_loader_epoch(train_loader, epoch))
        timings["train_s"] = summary.seconds
        mlog.write("train_end", steps=summary.steps, samples=summary.samples,
                   seconds=round(summary.seconds, 2), final_loss=summary.final_loss,
                   samples_per_s=round(summary.samples / max(summary.seconds, 1e-9), 2),
                   skipped_clips=budget.count)
        echo(f"trained {summary.steps} steps in {summary.seconds:.1f} s "
             f"({summary.samples / max(summary.seconds, 1e-9):.1f} samples/s), "
             f"final loss {summary.final_loss:.3f}")

        # -- evaluate -----------------------------------------------------------------------
        t0 = time.perf_counter()
        tasks = [t.build() for t in resolved.eval_tasks]
        eval_loaders = {
            split: build_loader(
                AudioCaptionDataset(entries, audio=cfg.data.audio, fbank=fbank, train=False,
                                    seed=cfg.seed),
                batch_size=cfg.eval.batch_size, shuffle=False, num_workers=cfg.data.num_workers,
                collator=collator, seed=cfg.seed)
            for split, entries in (("train", train_entries), ("test", test_entries))
        }
        models = {"pretrained": model}
        if baseline is not None:
            models["random-init"] = baseline
        results = {}
        for label, m in models.items():
            results[label] = evaluate(m, tasks, eval_loaders, budget, device, cfg.seed,
                                      cfg.eval.batch_size)
        notes = {}
        if model.text_encoder is None:
            notes["retrieval"] = ("skipped: the model has no text tower (objective "
                                  f"{resolved.objective.record.name}), so no joint space")
        samples = (caption_samples(model, eval_loaders["test"], device)
                   if model.caption_decoder is not None else [])
        timings["eval_s"] = time.perf_counter() - t0
        report = build_report(results, {
            "run": cfg.name, "run_dir": str(run_dir), "seed": cfg.seed,
            "objective": resolved.objective.record.name, "model_reads": sorted(needs),
            **({"notes": notes} if notes else {}),
            **({"caption_samples": samples} if samples else {}),
            "train_steps": summary.steps, "skipped_clips": budget.count,
            "skipped_paths": [getattr(b, "path", str(b)) for b in budget.skipped],
            "timings_s": {k: round(v, 2) for k, v in timings.items()},
        })
        write_report(report, run_dir)
        mlog.write("eval_end", seconds=round(timings["eval_s"], 2),
                   summary=report.get("summary", {}))
    echo("")
    echo(render_markdown(report))
    echo(f"report: {run_dir / 'report.md'}  (json: {run_dir / 'report.json'})")
    return run_dir


def evaluate(model, tasks, loaders, budget, device, seed, batch_size) -> list[Any]:
    """Embed both splits with the frozen model and run every eval task on them."""
    model.to(device).eval()
    train = extract_embeddings(model, budgeted(loaders["train"], budget), device=device)
    test = extract_embeddings(model, budgeted(loaders["test"], budget), device=device)
    tokenizer = model.tokenizer

    @torch.inference_mode()
    def embed_text(captions: list[str]) -> torch.Tensor:
        chunks = []
        for i in range(0, len(captions), batch_size):
            tokens = tokenizer(captions[i:i + batch_size])
            chunks.append(model.embed_text(tokens["input_ids"].to(device),
                                           tokens["attention_mask"].to(device)).cpu())
        return torch.cat(chunks)

    # no text tower (captioning only): no joint space to retrieve in
    ctx = EvalContext(train=train, test=test, seed=seed,
                      embed_text=embed_text if tokenizer is not None else None)
    return [result for task in tasks for result in task.run(ctx)]


@torch.inference_mode()
def caption_samples(model: AudioTextModel, loader: Iterable[dict[str, Any]], device: torch.device,
                    count: int = 4) -> list[dict[str, str]]:
    """Greedy captions of the first ``count`` readable test clips, beside their references."""
    model.to(device).eval()
    for batch in loader:
        if not batch["ids"]:
            continue
        n = min(count, len(batch["ids"]))
        generated = model.generate_captions(batch["features"][:n].to(device),
                                            batch["feature_lengths"][:n].to(device))
        return [{"id": i, "reference": ref, "generated": gen}
                for i, ref, gen in zip(batch["ids"][:n], batch["captions"][:n], generated)]
    return []


def _millions(module: torch.nn.Module) -> str:
    return f"{sum(p.numel() for p in module.parameters()) / 1e6:.2f} M"


def _digest(resolved: ResolvedRun) -> str:
    import hashlib
    import json

    spec = json.dumps(resolved.dump()["data"]["source"], sort_keys=True)
    return hashlib.sha1(spec.encode()).hexdigest()[:10]
