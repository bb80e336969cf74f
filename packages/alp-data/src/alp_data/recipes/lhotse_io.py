"""lhotse interop: import a CutSet of MonoCuts (captions as a list in
``supervision.custom["caption"]``, the CaptionStew release format) as ALP manifests, and export
ALP manifests as such a CutSet (``.jsonl.gz``). Needs the optional extra ``alp-data[lhotse]``.

Import goes through :class:`LhotseSource`, a recipe like the others, so each cut's audio is
probed and missing files count against ``max_missing``. Per-cut ``custom`` keys ``split`` and
``labels`` written by :func:`export_cutset` are read back; corpus and domain come from the
config (one CutSet is taken as one corpus).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from alp_core.errors import DataError
from alp_data.manifest import Caption, ManifestEntry, is_url, read_manifest
from alp_data.recipes.common import Candidate, Recipe, RecipeConfig, join

CAPTION_KEY = "caption"


def _lhotse() -> Any:
    try:
        import lhotse
    except ImportError as err:
        raise DataError("lhotse interop needs lhotse: pip install 'alp-data[lhotse]'") from err
    return lhotse


class LhotseConfig(RecipeConfig):
    """CutSet manifests (JSONL, optionally gzipped) under root."""

    train: str = Field("cuts_train.jsonl.gz", description="the training CutSet under root")
    test: str = Field("", description="the test CutSet under root (empty: none)")
    corpus: str = Field("lhotse", description="corpus name for cuts without one")
    domain: Literal["", "speech", "music", "sound"] = Field(
        "", description="domain for all clips (empty: unknown)")


def _audio_source(cut: Any) -> str:
    """The single file/URL source of a cut's recording."""
    sources = cut.recording.sources
    if len(sources) != 1 or sources[0].type not in ("file", "url"):
        kinds = ", ".join(s.type for s in sources)
        raise DataError(f"cut {cut.id}: recording {cut.recording.id} has sources [{kinds}]; "
                        "accepted: one 'file' or 'url' source")
    return str(sources[0].source)


def cut_captions(cut: Any) -> tuple[str, ...]:
    """Captions of all supervisions: ``custom["caption"]`` (a list or a string)."""
    out: list[str] = []
    for sup in cut.supervisions:
        value = (sup.custom or {}).get(CAPTION_KEY)
        values = [value] if isinstance(value, str) else list(value or [])
        out.extend(v.strip() for v in values if isinstance(v, str) and v.strip())
    return tuple(out)


def cut_to_candidate(cut: Any, root: str, split: str) -> Candidate:
    """A :class:`Candidate` for one MonoCut; relative audio paths are joined to ``root``."""
    if type(cut).__name__ != "MonoCut":
        raise DataError(f"cut {cut.id}: a {type(cut).__name__}; accepted: MonoCut")
    audio = _audio_source(cut)
    if not is_url(audio) and not Path(audio).is_absolute():
        audio = join(root, audio)
    captions = cut_captions(cut)
    if not captions:
        raise DataError(f"cut {cut.id}: no supervision has custom['{CAPTION_KEY}']; accepted: "
                        "a list of caption strings")
    custom = cut.custom or {}
    labels = {str(k): str(v) for k, v in (custom.get("labels") or {}).items()}
    return Candidate(id=cut.id, audio=(audio,), captions=tuple(Caption(c) for c in captions),
                     split=str(custom.get("split") or split), labels=labels,
                     offset=float(cut.start), duration=float(cut.duration))


class LhotseSource(Recipe):
    """ALP manifests from lhotse CutSets (the study's released CaptionStew manifests)."""

    source = "lhotse"

    def __init__(self, config: LhotseConfig, **kwargs: object) -> None:
        super().__init__(config, **kwargs)
        self.corpus, self.domain = config.corpus, config.domain

    def candidates(self) -> list[Candidate]:
        lhotse = _lhotse()
        cfg = self.config
        out: list[Candidate] = []
        for split, name in (("train", cfg.train), ("test", cfg.test)):
            if not name:
                continue
            path = join(cfg.root, name)
            try:
                cuts = lhotse.CutSet.from_file(path)
            except FileNotFoundError as err:
                raise DataError(f"CutSet not found: {path}") from err
            out.extend(cut_to_candidate(c, cfg.root, split) for c in cuts)
        return out


def manifest_to_cuts(entries: list[ManifestEntry]) -> Any:
    """A CutSet of MonoCuts, one per entry: a recording of the file (its first ``offset +
    duration`` seconds as far as ALP knows) and one supervision holding the captions."""
    lhotse = _lhotse()
    cuts = []
    for e in entries:
        channels = list(range(max(e.channels, 1)))
        length = e.offset + e.duration
        recording = lhotse.Recording(
            id=e.id, sources=[lhotse.audio.AudioSource(
                type="url" if is_url(e.audio) else "file", channels=channels, source=e.audio)],
            sampling_rate=e.sample_rate, num_samples=round(length * e.sample_rate),
            duration=length)
        sup = lhotse.SupervisionSegment(
            id=e.id, recording_id=e.id, start=0.0, duration=e.duration, channel=0,
            custom={CAPTION_KEY: list(e.captions)})
        custom = {k: v for k, v in (("corpus", e.corpus), ("domain", e.domain),
                                    ("split", e.split), ("labels", dict(e.labels))) if v}
        cuts.append(lhotse.MonoCut(id=e.id, start=e.offset, duration=e.duration, channel=0,
                                   recording=recording, supervisions=[sup],
                                   custom=custom or None))
    return lhotse.CutSet.from_cuts(cuts)


def export_cutset(manifest: str | Path, out: str | Path) -> str:
    """Write an ALP manifest as a lhotse CutSet file (``.jsonl.gz``); returns its path."""
    manifest_to_cuts(read_manifest(manifest)).to_file(str(out))
    return str(out)
