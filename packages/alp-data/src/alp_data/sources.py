"""Data sources: recipes that produce ALP manifests (``prepare(out_dir) -> {split: path}``)."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import Field

from alp_core import ComponentConfig, ConfigError


class ManifestSourceConfig(ComponentConfig):
    """Manifests you already have: one JSONL file per split (see alp_data.manifest)."""

    train: str = Field(description="JSONL(.gz) manifest of the pretraining clips: a path or "
                       "any fsspec URL")
    test: str = Field(description="JSONL(.gz) manifest of held-out clips for evaluation: a "
                      "path or any fsspec URL")


def _exists(location: str) -> bool:
    """Whether a local path or fsspec URL names an existing file (a missing backend says so).

    Messages name the location with URL credentials scrubbed."""
    import fsspec

    from alp_data.scrub import scrub_url

    try:
        fs, inner = fsspec.core.url_to_fs(location)
    except (ImportError, ValueError) as err:
        raise ConfigError(scrub_url(f"manifest {location}: no fsspec backend for it "
                                    f"({err})")) from None
    try:
        return bool(fs.isfile(inner))
    except Exception as err:  # network stacks raise their own error types
        raise ConfigError(scrub_url(f"manifest {location}: cannot reach it "
                                    f"({type(err).__name__}: {err})")) from None


class ManifestSource:
    """Uses existing manifests as they are; nothing is written. URLs stay strings (a ``Path``
    would fold ``s3://b`` into ``s3:/b``), local files become ``Path``s."""

    def __init__(self, config: ManifestSourceConfig, **_: object) -> None:
        self.config = config

    def prepare(self, out_dir: Path) -> dict[str, Path | str]:
        from alp_data.manifest import is_url
        from alp_data.scrub import scrub_url

        paths = {"train": self.config.train, "test": self.config.test}
        for split, path in paths.items():
            if not _exists(path):
                raise ConfigError(f"data.source.{split}: manifest {scrub_url(path)} does not "
                                  "exist")
        return {k: v if is_url(v) else Path(v) for k, v in paths.items()}


class DemoSource:
    """The embedded demo corpus, generated once into ``out_dir`` and reused after that."""

    def __init__(self, config, **_: object) -> None:
        self.config = config

    def prepare(self, out_dir: Path) -> dict[str, Path]:
        from alp_data.demo import VERSION, generate_demo_corpus

        out_dir = Path(out_dir)
        info = out_dir / "corpus.json"
        splits = {"train": out_dir / "train.jsonl", "test": out_dir / "test.jsonl"}
        if info.is_file() and all(p.is_file() for p in splits.values()):
            stored = json.loads(info.read_text())
            # the same config from the same generator (a newer one may caption differently)
            if stored.get("config") == self.config.model_dump(mode="json") and \
                    stored.get("version") == VERSION:
                return splits
        return {k: Path(v) for k, v in generate_demo_corpus(out_dir, self.config).items()}
