"""The embedded demo corpus: deterministic speech-like, music and environmental clips with
captions in several styles, written as FLAC files plus train/test JSONL manifests."""

from __future__ import annotations

from alp_data.demo.captions import CAPTION_STYLES, KEYWORDS, caption_mentions
from alp_data.demo.corpus import (
    DOMAINS,
    TASKS,
    VERSION,
    DemoCorpusConfig,
    generate_demo_corpus,
    render_clip,
)

__all__ = [
    "CAPTION_STYLES", "DOMAINS", "KEYWORDS", "TASKS", "VERSION", "DemoCorpusConfig",
    "caption_mentions", "generate_demo_corpus", "render_clip",
]
