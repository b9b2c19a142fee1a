from dataclasses import asdict, fields

import pytest

from src.common.config import config_from_dict, field_help, parse_config, resume_conflicts
from src.training.config import DENOISER_PRESETS, DenoiserConfig


def test_preset_then_flags():
    cfg = parse_config(DenoiserConfig, DENOISER_PRESETS, ["--preset", "smoke", "--epochs", "7", "--no-amp",
                                                          "--lr", "0.01", "--data-dir", "x"])
    assert cfg.preset == "smoke" and cfg.epochs == 7 and cfg.amp is False and cfg.lr == 0.01
    assert cfg.width == DENOISER_PRESETS["smoke"]["width"] and cfg.data_dir == "x"


def test_defaults_are_quick():
    assert parse_config(DenoiserConfig, DENOISER_PRESETS, []) == DenoiserConfig(**DENOISER_PRESETS["quick"])


def test_unknown_flag_and_preset_rejected(capsys):
    with pytest.raises(SystemExit) as e:
        parse_config(DenoiserConfig, DENOISER_PRESETS, ["--bogus", "1"])
    assert e.value.code == 2 and "unrecognized arguments: --bogus" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_config(DenoiserConfig, DENOISER_PRESETS, ["--preset", "nope"])
    with pytest.raises(SystemExit) as e:  # an abbreviation is a typo, not a flag
        parse_config(DenoiserConfig, DENOISER_PRESETS, ["--epoch", "1"])
    assert e.value.code == 2 and "unrecognized arguments: --epoch" in capsys.readouterr().err


def test_presets_only_name_real_fields():
    for values in DENOISER_PRESETS.values():
        DenoiserConfig(**values)
    with pytest.raises(ValueError, match="unknown DenoiserConfig keys: zzz"):
        config_from_dict(DenoiserConfig, {"zzz": 1})


@pytest.mark.parametrize("flags, problem", [
    (["--batch-size", "0"], "--batch-size 0: must be at least 1"),
    (["--steps-per-epoch", "0"], "--steps-per-epoch 0: must be at least 1"),
    (["--epochs", "0"], "--epochs 0: must be at least 1"),
    (["--lr", "0"], "--lr 0.0: must be above 0"),
    (["--val-fraction", "1"], "--val-fraction 1.0: must be at least 0 and below 1"),
    (["--tile", "16", "--overlap", "32"], "--overlap 32: must be below --tile 16"),
    (["--folds", "5", "--fold", "5"], "--fold 5: must be in 0..4 for --folds 5"),
    (["--fold", "3"], "--fold 3: needs --folds 2 or more; without it --val-fraction 0.15 of the pages"),
    (["--folds", "1", "--fold", "1"], "--fold 1: needs --folds 2 or more"),
    (["--device", "gpu"], "--device gpu: choose auto, cpu, cuda or cuda:N"),
])
def test_values_out_of_range_exit_2_naming_the_flag(capsys, flags, problem):
    with pytest.raises(SystemExit) as e:
        parse_config(DenoiserConfig, DENOISER_PRESETS, flags, prog="python -m src.train_denoiser")
    err = capsys.readouterr().err
    assert e.value.code == 2 and problem in err and "python -m src.train_denoiser" in err
    assert len(err.splitlines()) <= 3  # a short usage line, not every flag


@pytest.mark.parametrize("name", ["lr", "weight_decay", "warmup_epochs", "grad_clip", "photometric"])
@pytest.mark.parametrize("value", ["inf", "nan", "-inf"])
def test_a_float_that_is_not_finite_is_refused_naming_the_flag(capsys, name, value):
    """Else --lr inf trains to NaN and saves it as best, --warmup-epochs inf overflows after loading."""
    option = "--" + name.replace("_", "-")
    with pytest.raises(SystemExit) as e:
        parse_config(DenoiserConfig, DENOISER_PRESETS, [f"{option}={value}"])   # =: -inf is no flag
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"{option} {float(value)}: must be a finite number" in err


def test_every_value_at_its_bound_is_accepted():
    for flags in (["--device", "cuda:1"], ["--tile", "33", "--overlap", "32"], ["--workers", "-1"],
                  ["--folds", "5", "--fold", "4"], ["--photometric", "1"], ["--val-fraction", "0"]):
        parse_config(DenoiserConfig, DENOISER_PRESETS, flags)


def test_autoencoder_depth_needs_one_level(capsys):
    from src.mnist.config import AUTOENCODER_PRESETS, AutoencoderConfig
    with pytest.raises(SystemExit):
        parse_config(AutoencoderConfig, AUTOENCODER_PRESETS, ["--depth", "0"])
    assert "--depth 0: must be at least 1" in capsys.readouterr().err
    assert parse_config(DenoiserConfig, DENOISER_PRESETS, ["--depth", "0"]).depth == 0  # a U-Net may
    with pytest.raises(SystemExit):   # Digit Recognizer's train.csv must keep some rows for testing
        parse_config(AutoencoderConfig, AUTOENCODER_PRESETS, ["--test-fraction", "0"])
    assert "--test-fraction 0.0: must be above 0 and below 1" in capsys.readouterr().err


def test_help_describes_every_flag_with_its_default_and_preset_values(capsys):
    from src.mnist.config import AutoencoderConfig
    for cls in (DenoiserConfig, AutoencoderConfig):  # a new field needs its comment
        assert set(field_help(cls)) == {f.name for f in fields(cls)} - {"preset"}, cls.__name__
    with pytest.raises(SystemExit):
        parse_config(DenoiserConfig, DENOISER_PRESETS, ["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--width WIDTH channels at the first level (default: 32; smoke: 8)" in out
    assert "(default: 14; smoke: 2; full: 60; general-long: 28; scans: 28)" in out
    assert "--init-from INIT_FROM" in out
    assert "(default: none)" in out and "None" not in out


def test_resume_conflicts_name_training_flags_only():
    saved = asdict(DenoiserConfig())
    cfg = DenoiserConfig(width=16, flips=True, lr=2e-3, device="cpu", epochs=20, tile=512, name="x")
    assert resume_conflicts(saved, cfg) == ["--width 32 (now: --width 16)", "--no-flips (now: --flips)",
                                            "--lr 0.001 (now: --lr 0.002)"]
    # keys an old checkpoint lacks: its run ran as their defaults do
    assert resume_conflicts({"width": 32}, DenoiserConfig()) == []
    assert resume_conflicts({"width": 32}, DenoiserConfig(split_by="text")) == [
        "--split-by page (now: --split-by text)"]
    # a --fold without --folds (an older checkpoint may hold one) is unused: resumable without it
    assert resume_conflicts(asdict(DenoiserConfig(fold=3)), DenoiserConfig()) == []
    assert resume_conflicts(asdict(DenoiserConfig(folds=5, fold=3)), DenoiserConfig(folds=5)) == [
        "--fold 3 (now: --fold 0)"]


def test_the_denoisers_choices_are_the_losses_and_denoisers_that_exist():
    from src.models.registry import build_model
    from src.training.losses import LOSSES
    assert set(DenoiserConfig.choices["loss"]) == set(LOSSES)
    for name in DenoiserConfig.choices["model"]:
        build_model(name, **DenoiserConfig().model_config())


@pytest.mark.parametrize("module, argv", [
    ("src.make_submission", ["--checkpoint", "c.pt", "--ou", "s.csv"]),
    ("src.validate_submission", ["s.csv", "--samp", "x.csv"]),
    ("src.submit", ["s.csv", "-m", "x", "--samp", "x.csv"]),
    ("src.download", ["--chec"])])
def test_no_command_takes_an_abbreviated_flag(module, argv, capsys):
    import importlib
    with pytest.raises(SystemExit) as e:
        importlib.import_module(module).main(argv)
    flag = next(a for a in reversed(argv) if a.startswith("--"))
    assert e.value.code == 2 and f"unrecognized arguments: {flag}" in capsys.readouterr().err


def test_a_name_is_a_name_and_a_depth_fits_the_patches(capsys):
    from src.mnist.config import AUTOENCODER_PRESETS, AutoencoderConfig

    for cls, presets in ((DenoiserConfig, DENOISER_PRESETS), (AutoencoderConfig, AUTOENCODER_PRESETS)):
        for name in ("../evil", "a/b", "..", "a\\b"):
            with pytest.raises(SystemExit):
                parse_config(cls, presets, ["--name", name])
            assert f"--name {name}: a name, not a path" in capsys.readouterr().err
    assert parse_config(AutoencoderConfig, AUTOENCODER_PRESETS, ["--name", ""]).name == ""   # its default
    with pytest.raises(SystemExit):
        parse_config(DenoiserConfig, DENOISER_PRESETS, ["--name", ""])
    assert "--name: must not be empty" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_config(DenoiserConfig, DENOISER_PRESETS, ["--preset", "smoke", "--depth", "5"])
    assert "--patch-size 48: the U-Net halves a patch 6 times at --depth 5, so it needs at least 64 px" in \
        capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_config(DenoiserConfig, DENOISER_PRESETS, ["--depth", "7", "--patch-size", "512"])
    assert "--depth 7: must be at least 0 and at most 6" in capsys.readouterr().err
