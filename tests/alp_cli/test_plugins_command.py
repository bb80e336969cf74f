"""``alp plugins`` shows components with their distribution and plugins that failed to load."""

from __future__ import annotations

from alp_cli.main import main


def test_table_lists_components_and_failures(site, capsys):
    site("fake-broken", "fake_broken", "raise ImportError('needs libfoo')\n")
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    header, *rows = out.splitlines()
    assert header.split() == ["KIND", "NAME", "DISTRIBUTION", "VERSION", "DESCRIPTION"]
    assert any(r.split()[:4] == ["audio_encoder", "transformer", "alp-models", "0.1.0"]
               for r in rows)
    assert "plugins that failed to load:" in out
    assert "fake_broken (fake-broken 1.0): ImportError: needs libfoo" in out


def test_conflict_is_reported_as_an_error(site, capsys):
    source = """
from alp_core import ObjectiveRecord, EmptyConfig, hookimpl
@hookimpl
def alp_objectives():
    return [ObjectiveRecord("infonce", EmptyConfig, "math:sqrt")]
"""
    site("fake-clash", "fake_clash", source)
    assert main(["plugins"]) == 2
    err = capsys.readouterr().err
    assert "conflicting plugins" in err and "alp-objectives" in err and "fake-clash" in err


def test_a_plugin_command_that_cannot_load_leaves_every_other_command_working(site, capsys):
    # a misspelled lazy path of a plugin command crashed `alp plugins`, `alp run`, every command
    site("fake-cmd", "fake_cmd", """
from alp_core import CommandRecord, hookimpl
def add(parser):
    parser.add_argument("--x")
@hookimpl
def alp_cli_commands():
    return [CommandRecord("broken", "a broken command", "fake_cmd:add_argumnets", "fake_cmd:run"),
            CommandRecord("norun", "a command whose run is misspelled", "fake_cmd:add",
                          "fake_cmd:rnu")]
""")
    assert main(["plugins"]) == 0
    captured = capsys.readouterr()
    assert "fake_cmd (fake-cmd 1.0): command 'broken': AttributeError" in captured.out
    assert main(["norun"]) == 2
    err = capsys.readouterr().err
    assert "alp norun: error: the command's plugin 'fake_cmd' (fake-cmd) cannot load" in err
    assert "'fake_cmd:rnu'" in err and "Traceback" not in err
