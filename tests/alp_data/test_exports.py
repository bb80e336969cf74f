"""The package's lazy exports: every listed name resolves to its module's object, and
importing the package (plugin discovery does) imports no torch."""

from __future__ import annotations

import importlib
import subprocess
import sys

import alp_data


def test_every_export_is_its_modules_object():
    assert alp_data.__all__ == ["__version__", *sorted(alp_data._EXPORTS)]
    for name, module in alp_data._EXPORTS.items():
        assert getattr(alp_data, name) is getattr(
            importlib.import_module(f"alp_data.{module}"), name), name
    for name in ("BadRow", "AudioError", "BAD_CLIP_REASONS", "scrub_url", "ClipTransform",
                 "write_shards", "open_shards", "build_stream_loader", "map_tasks", "MixConfig"):
        assert name in alp_data.__all__, name


def test_mix_stays_the_submodule():
    from alp_data import mix

    assert mix.__name__ == "alp_data.mix" and callable(mix.mix)


def test_importing_the_package_imports_no_torch():
    code = ("import sys, alp_data; alp_data.scrub_url; alp_data.MixConfig; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
