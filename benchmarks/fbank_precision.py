"""How far Fbank's features are from Kaldi's exact result, by precision, FFT and device.

Run here (CPU, about 20 s) or on a GPU machine (adds the device's rows)::

    OMP_NUM_THREADS=1 python benchmarks/fbank_precision.py --out fbank_precision.json
    python benchmarks/fbank_precision.py --device cuda --out fbank_precision.json

The exact result is ``torchaudio.compliance.kaldi.fbank`` on the float64 wave (CPU). Each
row is one way of computing the features, over two signal sets:

- ``tones``: a 0.9-amplitude tone over noise 25, 40 and 60 dB below it (2 s each), where most
  mel bins hold a tiny share of a frame's energy;
- ``loader``: the loader benchmark's clips (``loader_cases.write_clips``: a 0.3 tone + 0.05
  noise, 3-10 s, every tenth resampled from 44.1 kHz).

For each row and set: ``max`` and ``p999`` of |features - exact| (log-mel), the mel bins
where it passes the fbank tests' 1e-3, and ``max_vs_cpu32``: the largest difference from
the CPU's float32 features (what ``data.features_on=device`` changes against the default).
``ms``: CPU milliseconds per clip for the CPU rows (one thread), device milliseconds per
padded batch of 32 loader clips for the device rows.
"""

from __future__ import annotations

import argparse
import atexit
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))

from alp_data import features  # noqa: E402
from alp_data.audio import load_audio  # noqa: E402
from alp_data.features import Fbank, FbankConfig  # noqa: E402
from loader_cases import SAMPLE_RATE, device_ms, kaldi_fbank, write_clips  # noqa: E402

TOLERANCE = 1e-3


def tones(seconds: float = 2.0) -> list[torch.Tensor]:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    rng = np.random.default_rng(0)
    waves = []
    for noise_db in (25, 40, 60):
        wave = 0.9 * np.sin(2 * np.pi * 3000 * t) + 0.9 * 10 ** (-noise_db / 20) \
            * rng.standard_normal(t.size)
        waves.append(torch.from_numpy(np.clip(wave, -1, 1).astype(np.float32)))
    return waves


def _scipy_rfft(x: torch.Tensor) -> torch.Tensor:
    import scipy.fft

    return torch.from_numpy(scipy.fft.rfft(x.numpy(), axis=-1))


def _have_scipy() -> bool:
    try:
        import scipy.fft  # noqa: F401
    except ImportError:
        return False
    return True


def _with_fft(rfft: Callable, fn: Callable[[], list[torch.Tensor]]) -> list[torch.Tensor]:
    saved = features.torch.fft.rfft
    features.torch.fft.rfft = rfft
    try:
        return fn()
    finally:
        features.torch.fft.rfft = saved


def _stats(got: list[torch.Tensor], want: list[torch.Tensor], cpu32: list[torch.Tensor]
           ) -> dict:
    diff = torch.cat([(g.double().cpu() - w).abs() for g, w in zip(got, want, strict=True)])
    vs_cpu = torch.cat([(g.cpu() - c).abs().flatten() for g, c in zip(got, cpu32, strict=True)])
    flat = diff.flatten()
    return {"max": float(flat.max()),
            "p999": float(flat.kthvalue(max(1, int(0.999 * flat.numel()))).values),
            "bins_over_1e-3": (diff.max(dim=0).values > TOLERANCE).nonzero().flatten().tolist(),
            "max_vs_cpu32": float(vs_cpu.max())}


def _stacked(fbank: Fbank, waves: list[torch.Tensor], device: torch.device
             ) -> list[torch.Tensor]:
    sizes = [int(w.shape[0]) for w in waves]
    rows = torch.zeros(len(waves), max(sizes))
    for i, wave in enumerate(waves):
        rows[i, :sizes[i]] = wave
    out = fbank.stacked(rows.to(device), sizes)
    return [row[:fbank.num_frames(n)] for row, n in zip(out, sizes, strict=True)]


def _cpu_ms_per_clip(fbank: Fbank, waves: list[torch.Tensor]) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for wave in waves:
            fbank(wave)
        best = min(best, time.perf_counter() - start)
    return 1000 * best / len(waves)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=64, help="loader clips")
    parser.add_argument("--device", default="cpu", help="cuda adds the device's rows")
    parser.add_argument("--out", default="fbank_precision.json")
    parser.add_argument("--device-rows", action="store_true",
                        help="add the device rows on the CPU too (a smoke run of them)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    device = torch.device(args.device)
    folder = Path(tempfile.mkdtemp(prefix="alp-fbank-precision-"))
    atexit.register(shutil.rmtree, folder, True)  # the written clips go when the run ends
    clips = write_clips(folder, num_clips=args.clips)
    sets = {"tones": tones(),
            "loader": [load_audio(e.audio, SAMPLE_RATE) for e in clips]}
    f32, f64 = Fbank(), Fbank(FbankConfig(precision="float64"))
    result: dict = {"device": torch.cuda.get_device_name(device) if device.type == "cuda"
                    else "cpu", "torch": torch.__version__, "rows": {}}
    for name, waves in sets.items():
        want = [kaldi_fbank(w.double()) for w in waves]  # the exact result
        cpu32 = [f32(w) for w in waves]
        rows = {
            "cpu float32": cpu32,
            "kaldi.fbank float32": [kaldi_fbank(w.float()) for w in waves],
            "cpu float64": [f64(w) for w in waves],
        }
        if _have_scipy():  # another float32 FFT on the same frames
            rows["cpu float32, scipy FFT"] = _with_fft(_scipy_rfft, lambda w=waves: [
                f32(x) for x in w])
        if device.type != "cpu" or args.device_rows:
            rows[f"device {device.type} float32"] = _stacked(f32, waves, device)
            rows[f"device {device.type} float32, per clip"] = [f32(w.to(device)) for w in waves]
            rows[f"device {device.type} float64"] = _stacked(f64, waves, device)
        for row, got in rows.items():
            result["rows"].setdefault(row, {})[name] = _stats(got, want, cpu32)
    loader = sets["loader"]
    result["rows"]["cpu float32"]["ms"] = round(_cpu_ms_per_clip(f32, loader), 3)
    result["rows"]["cpu float64"]["ms"] = round(_cpu_ms_per_clip(f64, loader), 3)
    if device.type != "cpu" or args.device_rows:
        # a padded batch of 32 already on the device: the fbank alone is timed (padding the
        # waves on the host and copying them over are the loader's work, not the fbank's)
        sizes = [int(w.shape[0]) for w in loader[:32]]
        staged = torch.zeros(len(sizes), max(sizes))
        for i, wave in enumerate(loader[:32]):
            staged[i, :sizes[i]] = wave
        staged = staged.to(device)
        for name, fbank in (("float32", f32), ("float64", f64)):
            result["rows"][f"device {device.type} {name}"]["ms"] = round(device_ms(
                lambda fbank=fbank: fbank.stacked(staged, sizes), device), 3)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"| features ({result['device']}) | tones: max / bins over 1e-3 / vs CPU float32 "
          "| loader clips: max / p99.9 / vs CPU float32 | ms |")
    print("| --- | --- | --- | ---: |")
    for row, by_set in result["rows"].items():
        t, c = by_set["tones"], by_set["loader"]
        bins = t["bins_over_1e-3"]
        span = f"{len(bins)} ({bins[0]}-{bins[-1]})" if bins else "0"
        print(f"| {row} | {t['max']:.1e} / {span} / {t['max_vs_cpu32']:.1e} | {c['max']:.1e} / "
              f"{c['p999']:.1e} / {c['max_vs_cpu32']:.1e} | {by_set.get('ms', '')} |")


if __name__ == "__main__":
    main()
