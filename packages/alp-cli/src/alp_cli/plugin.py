"""Registers the built-in ``alp`` sub-commands through the ALP hooks."""

from __future__ import annotations

from alp_core import CommandRecord, hookimpl


@hookimpl
def alp_cli_commands() -> list[CommandRecord]:
    return [
        CommandRecord("run", "pretrain and evaluate: alp run [CONFIG.yaml] [key=value ...]",
                      "alp_cli.commands.run:add_arguments", "alp_cli.commands.run:run"),
        CommandRecord("export", "a run's weights as one safetensors file (--out, ZeRO shards "
                      "included) or a save_pretrained folder (--pretrained)",
                      "alp_cli.commands.export:add_arguments", "alp_cli.commands.export:run"),
        CommandRecord("plugins", "list registered components and plugins that failed to load",
                      "alp_cli.commands.plugins:add_arguments", "alp_cli.commands.plugins:run"),
        CommandRecord("data", "corpus data: alp data prepare | mix | shard (see alp data -h)",
                      "alp_cli.commands.data:add_arguments", "alp_cli.commands.data:run"),
        CommandRecord("eval", "frozen encoder on standard benchmarks: alp eval CHECKPOINT_OR_RUN "
                      "--tasks NAME:root=DIR[,key=value ...] [--out DIR] [--cache URL]",
                      "alp_cli.commands.eval:add_arguments", "alp_cli.commands.eval:run"),
        CommandRecord("compare", "evaluation reports side by side (Markdown + domain charts): "
                      "alp compare A B ... --out DIR",
                      "alp_cli.commands.compare:add_arguments", "alp_cli.commands.compare:run"),
        CommandRecord("embed", "embed audio files with a trained model: alp embed MODEL FILE... "
                      "--out X.npy", "alp_cli.commands.embed:add_arguments",
                      "alp_cli.commands.embed:run"),
        CommandRecord("zero-shot", "zero-shot labels of audio files: alp zero-shot MODEL FILE... "
                      "--labels dog,cat", "alp_cli.commands.zero_shot:add_arguments",
                      "alp_cli.commands.zero_shot:run"),
    ]
