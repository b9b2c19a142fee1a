import pytest

from src.config import DENOISER_PRESETS, DenoiserConfig, config_from_dict, parse_config


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
