"""The ``shards`` data source: train and test splits streamed from tar shards.

``data.source: {name: shards, train: DIR_OR_PATTERN, test: DIR_OR_PATTERN}`` where each split
is a shard folder written by ``alp data shard`` (its ``index.json``), an ``index.json``
itself, or a brace pattern such as ``s3://bucket/stew/train/shard-{000000..000511}.tar`` whose
folder holds the index. Local paths, ``memory://`` and object stores (through their fsspec
extras, e.g. ``alp-data[s3]``) all work. Nothing is copied: ``prepare`` checks the indexes.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from alp_core import ComponentConfig, ConfigError
from alp_core.errors import DataError

__all__ = ["ShardsSource", "ShardsSourceConfig"]


class ShardsSourceConfig(ComponentConfig):
    """Tar shards per split (see ``alp data shard``)."""

    train: str = Field(description="shard folder, its index.json, or a brace-pattern URL of "
                       "the pretraining shards")
    test: str = Field(description="the same for the held-out clips used in evaluation")
    shuffle_buffer: int = Field(1000, ge=1, description="clips shuffled together in a "
                                "window (on top of a per-epoch shard order)")


class ShardsSource:
    """Checks that both splits' shard indexes can be read; the loaders stream from them."""

    #: tells the training recipe to stream these splits instead of reading manifests
    streams = True

    def __init__(self, config: ShardsSourceConfig, **_: object) -> None:
        self.config = config

    def prepare(self, out_dir: Path) -> dict[str, str]:
        from alp_data.shards.index import open_shards

        splits = {"train": self.config.train, "test": self.config.test}
        for split, spec in splits.items():
            try:
                index = open_shards(spec)
            except DataError as err:
                raise ConfigError(f"data.source.{split}: {err}") from None
            if index.clips == 0:
                raise ConfigError(f"data.source.{split}: {spec} holds no clips")
        return splits
