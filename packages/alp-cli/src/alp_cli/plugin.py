"""Registers the built-in ``alp`` sub-commands through the ALP hooks."""

from __future__ import annotations

from alp_core import CommandRecord, hookimpl


@hookimpl
def alp_cli_commands() -> list[CommandRecord]:
    return [
        CommandRecord("run", "pretrain and evaluate: alp run [CONFIG.yaml] [key=value ...]",
                      "alp_cli.commands.run:add_arguments", "alp_cli.commands.run:run"),
        CommandRecord("export", "a run's weights (ZeRO shards included) as one safetensors file",
                      "alp_cli.commands.export:add_arguments", "alp_cli.commands.export:run"),
        CommandRecord("plugins", "list registered components and plugins that failed to load",
                      "alp_cli.commands.plugins:add_arguments", "alp_cli.commands.plugins:run"),
        CommandRecord("data", "corpus data: alp data prepare SOURCE --root ROOT --out DIR "
                      "[key=value ...]",
                      "alp_cli.commands.data:add_arguments", "alp_cli.commands.data:run"),
    ]
