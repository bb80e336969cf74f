"""Parameter groups: the model names its parts, the optimizer config gives each its rate.

The model (not the engine) says which parameters form which group through
``model.param_groups() -> {group name: [(param name, param), ...]}``; modules without that
method form one group ``"model"``. Matching name prefixes is avoided on purpose: wrappers such
as DDP rename parameters (``module.``), which would silently move them between groups.
"""

from __future__ import annotations

from typing import Any

from torch import nn

__all__ = ["named_groups", "optimizer_groups"]

NamedParams = list[tuple[str, nn.Parameter]]


def named_groups(modules: dict[str, nn.Module]) -> dict[str, NamedParams]:
    """``{group: [(name, param)]}`` over ``modules`` (e.g. model and objective), each once."""
    groups: dict[str, NamedParams] = {}
    seen: set[int] = set()
    for prefix, module in modules.items():
        declared = getattr(module, "param_groups", None)
        parts = declared() if callable(declared) else {prefix: list(module.named_parameters())}
        for group, named in parts.items():
            for name, p in named:
                if id(p) in seen or not p.requires_grad:
                    continue
                seen.add(id(p))
                groups.setdefault(group, []).append((f"{prefix}.{name}", p))
        missing = [n for n, p in module.named_parameters() if p.requires_grad and id(p) not in seen]
        if missing:
            raise ValueError(f"{type(module).__name__}.param_groups() leaves out {missing[:5]}; "
                             "every trainable parameter must be in one group")
    return groups


def _no_decay(name: str, p: nn.Parameter) -> bool:
    """Biases, norm gains and scalars take no weight decay."""
    return p.ndim < 2 or "norm" in name.lower()


def optimizer_groups(
    modules: dict[str, nn.Module], lr: float, group_lrs: dict[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Torch param groups: per named group, split into decay / no-decay, with ``lr`` set.

    Each group dict carries ``name``, ``lr`` and ``no_decay`` (the optimizer decides what
    weight decay means for it).
    """
    out = []
    for group, named in named_groups(modules).items():
        group_lr = (group_lrs or {}).get(group, lr)
        decay = [p for n, p in named if not _no_decay(n, p)]
        no_decay = [p for n, p in named if _no_decay(n, p)]
        if decay:
            out.append({"params": decay, "lr": group_lr, "name": f"{group}.decay",
                        "no_decay": False})
        if no_decay:
            out.append({"params": no_decay, "lr": group_lr, "name": f"{group}.no_decay",
                        "no_decay": True})
    return out
