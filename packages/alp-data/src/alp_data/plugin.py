"""Registers the built-in data sources through the ALP hooks (no torch import)."""

from __future__ import annotations

from alp_core import DataSourceRecord, hookimpl
from alp_data.demo.corpus import DemoCorpusConfig
from alp_data.sources import ManifestSourceConfig


@hookimpl
def alp_data_sources() -> list[DataSourceRecord]:
    return [
        DataSourceRecord(
            "demo", DemoCorpusConfig, "alp_data.sources:DemoSource",
            "embedded deterministic corpus: speech-like, music and environmental sound + captions",
        ),
        DataSourceRecord(
            "manifest", ManifestSourceConfig, "alp_data.sources:ManifestSource",
            "your own JSONL manifests (train and test)",
        ),
    ]
