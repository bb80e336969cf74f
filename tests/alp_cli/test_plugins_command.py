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
