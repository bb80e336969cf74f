"""Plugin-manager behaviour: entry points, failures, conflicts, the disable switch, lookups."""

from __future__ import annotations

import sys

import pytest

from alp_core import (
    ComponentConfig,
    ConfigError,
    ObjectiveRecord,
    PluginConflictError,
    UnknownComponentError,
    hookimpl,
    new_plugin_manager,
)
from alp_core.manager import DISABLE_EXTERNAL_ENV, get_plugin_manager, reset_plugin_manager

GOOD = """
from alp_core import ComponentConfig, ObjectiveRecord, hookimpl

class HingeConfig(ComponentConfig):
    margin: float = 0.2

def build(config, **_):
    return ("hinge", config.margin)

@hookimpl
def alp_objectives():
    return [ObjectiveRecord("{name}", HingeConfig, build, "a test objective")]
"""


def test_builtin_components_register_through_entry_points():
    pm = new_plugin_manager()
    assert "infonce" in pm.names("objective")
    rec = pm.get("objective", "infonce")
    assert rec.distribution == "alp-objectives" and rec.version
    assert {"run", "plugins"} <= set(pm.names("command"))
    assert pm.failures == []


def test_external_plugin_is_loaded_with_its_distribution(site):
    site("fake-hinge", "fake_hinge", GOOD.format(name="hinge"))
    pm = new_plugin_manager()
    rec = pm.get("objective", "hinge")
    assert (rec.distribution, rec.version, rec.plugin) == ("fake-hinge", "1.0", "fake_hinge")
    assert rec.build({"margin": 0.5}) == ("hinge", 0.5)


def test_broken_plugin_is_reported_and_others_keep_working(site):
    site("fake-broken", "fake_broken", "import not_a_module_anywhere\n")
    site("fake-hinge", "fake_hinge", GOOD.format(name="hinge"))
    pm = new_plugin_manager()
    [failure] = pm.failures
    assert failure.plugin == "fake_broken" and failure.distribution == "fake-broken"
    assert "not_a_module_anywhere" in failure.error
    assert "hinge" in pm.names("objective") and "infonce" in pm.names("objective")


def test_hook_that_raises_is_reported_and_skipped(site):
    site("fake-raiser", "fake_raiser", """
        from alp_core import hookimpl
        @hookimpl
        def alp_objectives():
            raise RuntimeError("boom")
    """)
    pm = new_plugin_manager()
    assert "infonce" in pm.names("objective")
    assert any("boom" in f.error and f.distribution == "fake-raiser" for f in pm.failures)


def test_misspelled_hook_is_reported(site):
    site("fake-typo", "fake_typo", """
        from alp_core import hookimpl
        @hookimpl
        def alp_objectivs():
            return []
    """)
    pm = new_plugin_manager()
    [failure] = pm.failures
    assert failure.distribution == "fake-typo" and "alp_objectivs" in failure.error


def test_two_plugins_claiming_one_name_is_an_error_naming_both(site):
    site("fake-one", "fake_one", GOOD.format(name="hinge"))
    site("fake-two", "fake_two", GOOD.format(name="hinge"))
    pm = new_plugin_manager()
    with pytest.raises(PluginConflictError) as err:
        pm.records("objective")
    assert "fake-one" in str(err.value) and "fake-two" in str(err.value)


def test_plugin_overriding_a_builtin_name_conflicts(site):
    site("fake-shadow", "fake_shadow", GOOD.format(name="infonce"))
    with pytest.raises(PluginConflictError, match="alp-objectives.*fake-shadow|fake-shadow.*alp"):
        new_plugin_manager().records("objective")


def test_disable_switch_turns_external_plugins_off(site, monkeypatch):
    site("fake-hinge", "fake_hinge", GOOD.format(name="hinge"))
    monkeypatch.setenv(DISABLE_EXTERNAL_ENV, "1")
    pm = new_plugin_manager()
    assert "hinge" not in pm.names("objective")
    assert "infonce" in pm.names("objective")
    monkeypatch.setenv(DISABLE_EXTERNAL_ENV, "0")
    assert "hinge" in new_plugin_manager().names("objective")


def test_unknown_name_lists_valid_choices():
    pm = new_plugin_manager()
    with pytest.raises(UnknownComponentError) as err:
        pm.get("objective", "infonse")
    assert isinstance(err.value, ConfigError)
    assert "infonse" in str(err.value) and "infonce" in str(err.value)
    with pytest.raises(UnknownComponentError, match="audio_encoder"):
        pm.records("audio_encoders")


def test_plugins_added_in_process_and_bad_records_rejected():
    class Cfg(ComponentConfig):
        pass

    class Plugin:
        @hookimpl
        def alp_objectives(self):
            return [ObjectiveRecord("mine", Cfg, "math:sqrt")]

    class Wrong:
        @hookimpl
        def alp_objectives(self):
            return ["not a record"]

    pm = new_plugin_manager(load_entrypoints=False, plugins=[("mine", Plugin()),
                                                              ("wrong", Wrong())])
    assert pm.names("objective") == ["mine"]
    assert [f.plugin for f in pm.failures] == ["wrong"]
    assert "ObjectiveRecord" in pm.failures[0].error


def test_cached_manager_is_built_once_and_resettable():
    first = get_plugin_manager()
    assert get_plugin_manager() is first
    reset_plugin_manager()
    assert get_plugin_manager() is not first


def test_registration_does_not_import_torch():
    import subprocess

    code = ("import sys; from alp_core import get_plugin_manager as g; pm = g(); "
            "[pm.records(k) for k in ('objective', 'command', 'audio_encoder', 'text_encoder', "
            "'eval_task', 'data_source')]; "
            "heavy = [m for m in ('torch', 'transformers', 'torchaudio') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_an_external_entry_point_named_like_a_builtin_cannot_knock_it_out(site):
    # the first distribution on sys.path won the name: alp_train's engines disappeared
    site("squatter", "fake_squat", "x = 1\n", entry_name="alp_train")
    pm = new_plugin_manager()
    assert "single" in pm.names("engine")
    (failure,) = [f for f in pm.failures if f.plugin == "alp_train"]
    assert failure.distribution == "squatter" and "already taken by alp-train" in failure.error


def test_a_distribution_without_a_name_is_skipped_not_fatal(site, tmp_path):
    site("fake-noname", "fake_noname", GOOD.format(name="noname-loss"))
    info = next((tmp_path / "site").glob("fake_noname-*.dist-info"))
    (info / "METADATA").write_text("Metadata-Version: 2.1\nVersion: 1.0\n")
    pm = new_plugin_manager()  # crashed: 'NoneType' object has no attribute 'lower'
    assert "infonce" in pm.names("objective")


def test_a_hook_that_raises_is_logged(site, caplog):
    site("fake-loud", "fake_loud", """
        from alp_core import hookimpl
        @hookimpl
        def alp_objectives():
            raise RuntimeError("bad json")
    """)
    pm = new_plugin_manager()
    with caplog.at_level("WARNING"):
        pm.names("objective")
    assert "alp_objectives failed" in caplog.text and "bad json" in caplog.text
