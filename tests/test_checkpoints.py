import os
import pickle

import pytest
import torch

from src.common.errors import CheckpointError
from src.models.checkpoints import (FORMAT_VERSION, init_encoder_from, load_checkpoint, load_failure,
                                    load_model, make_checkpoint, save_checkpoint)
from src.models.registry import build_model


def ckpt_for(model, kind="denoiser", **kw):
    return make_checkpoint(model, kind=kind, model_name="unet", model_config=dict(width=4, depth=1),
                           config={"lr": 1e-3}, epoch=3, best_score=0.05, **kw)


def test_round_trip_rebuilds_identical_model(tmp_path):
    model = build_model("unet", width=4, depth=1)
    save_checkpoint(tmp_path / "m.pt", ckpt_for(model))
    loaded, ckpt = load_model(tmp_path / "m.pt", kind="denoiser")
    theirs = model.state_dict()
    assert (all(torch.equal(v, theirs[k]) for k, v in loaded.state_dict().items())
            and len(theirs) == len(loaded.state_dict()))
    x = torch.rand(1, 1, 20, 20)
    # loaded models are channels-last (faster convs), whose kernels round differently in the last bits
    assert torch.allclose(loaded(x), model.eval()(x), atol=1e-6)
    assert ckpt["epoch"] == 3 and ckpt["config"] == {"lr": 1e-3} and ckpt["format_version"] == FORMAT_VERSION


def test_not_a_checkpoint_and_missing(tmp_path):
    (tmp_path / "x.pt").write_text("hello")
    with pytest.raises(CheckpointError,
                       match=r"x\.pt: not a loadable .*: truncated, corrupt or not a PyTorch file$"):
        load_checkpoint(tmp_path / "x.pt")
    save_checkpoint(tmp_path / "whole.pt", ckpt_for(build_model("unet", width=4, depth=1)))
    (tmp_path / "cut.pt").write_bytes((tmp_path / "whole.pt").read_bytes()[:3000])
    with pytest.raises(CheckpointError, match=r"cut\.pt: .*truncated, corrupt or not a PyTorch file \(.+\)$"):
        load_checkpoint(tmp_path / "cut.pt")
    for other in ({"a": 1}, {"format_version": "1", "model": {}}):   # another program's dict
        torch.save(other, tmp_path / "y.pt")
        with pytest.raises(CheckpointError, match=r"y\.pt: not a checkpoint of this package"):
            load_checkpoint(tmp_path / "y.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "none.pt")


def test_an_unreadable_checkpoint_is_not_called_corrupt(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "m.pt", ckpt_for(build_model("unet", width=4, depth=1)))

    def refused(*args, **kwargs):   # chmod 000 stops no one when the tests run as root
        raise PermissionError(13, "Permission denied", str(tmp_path / "m.pt"))
    monkeypatch.setattr(torch, "load", refused)
    with pytest.raises(CheckpointError, match=r"m\.pt: cannot read it \(Permission denied\)$"):
        load_checkpoint(tmp_path / "m.pt")


class Evil:
    def __reduce__(self):
        return (open, ("/tmp/pwned-by-checkpoint", "w"))


# The crafted file is a plain pickle (protocol 4), which torch warns about before refusing it.
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_crafted_pickle_does_not_run(tmp_path):
    p = tmp_path / "evil.pt"
    with open(p, "wb") as f:
        pickle.dump({"format_version": 1, "model": Evil()}, f)
    with pytest.raises(CheckpointError, match=r"evil\.pt: .*not a PyTorch file"):
        load_checkpoint(p)
    torch.save({"format_version": 1, "model": Evil()}, tmp_path / "evil_torch.pt")  # pickles open()
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path / "evil_torch.pt")
    assert not (tmp_path.parent / "pwned-by-checkpoint").exists()
    # one line naming the refused object, without torch's advice to retry with weights_only=False
    msg = str(err.value)
    assert "evil_torch.pt" in msg and "safe load refuses" in msg and "open" in msg
    assert "\n" not in msg and "Re-running" not in msg
    assert not os.path.exists("/tmp/pwned-by-checkpoint")


def test_future_version_kind_and_wrong_model(tmp_path):
    model = build_model("unet", width=4, depth=1)
    c = ckpt_for(model)
    save_checkpoint(tmp_path / "f.pt", {**c, "format_version": FORMAT_VERSION + 1})
    with pytest.raises(CheckpointError, match="newer than this package"):
        load_checkpoint(tmp_path / "f.pt")
    save_checkpoint(tmp_path / "k.pt", c)
    with pytest.raises(CheckpointError, match="expected 'autoencoder'"):
        load_checkpoint(tmp_path / "k.pt", kind="autoencoder")
    save_checkpoint(tmp_path / "w.pt", {**c, "model_config": dict(width=8, depth=1)})
    with pytest.raises(CheckpointError, match="weights do not fit model 'unet'"):
        load_model(tmp_path / "w.pt")


def test_unwritable_folder_is_a_clear_oserror(tmp_path):
    (tmp_path / "file").write_text("a file where a folder should be")
    with pytest.raises(OSError, match="cannot write"):
        save_checkpoint(tmp_path / "file" / "m.pt", {"format_version": 1})


def test_full_disk_keeps_previous_checkpoint(tmp_path, monkeypatch):
    """On a full disk torch.save into a file raises RuntimeError ("unexpected pos ..."), naming no file
    (as on a 64 KB tmpfs); so the checkpoint is serialised first and written as bytes."""
    import errno
    import pathlib
    save_checkpoint(tmp_path / "m.pt", {"format_version": 1, "model": {}, "v": 1})

    def full(self, data):
        with open(self, "wb") as f:
            f.write(bytes(data)[:100])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pathlib.Path, "write_bytes", full)
    with pytest.raises(OSError, match=r"cannot write .*m\.pt: No space left on device"):
        save_checkpoint(tmp_path / "m.pt", {"format_version": 1, "model": {}, "v": 2})
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "m.pt")["v"] == 1 and len(list(tmp_path.iterdir())) == 1


def test_init_encoder_from(tmp_path):
    donor = build_model("unet", width=4, depth=2)
    save_checkpoint(tmp_path / "ae.pt", ckpt_for(donor, kind="autoencoder"))
    model = build_model("unet", width=4, depth=2)
    names = init_encoder_from(model, tmp_path / "ae.pt")
    assert names and all(n.startswith("encoder.") for n in names)
    assert torch.equal(model.encoder.stem[1][0].weight, donor.encoder.stem[1][0].weight)
    assert not torch.equal(model.decs[0][0].weight, donor.decs[0][0].weight)  # decoder untouched
    with pytest.raises(CheckpointError, match="do not fit"):
        init_encoder_from(build_model("unet", width=8, depth=2), tmp_path / "ae.pt")
    save_checkpoint(tmp_path / "d.pt", ckpt_for(donor))
    with pytest.raises(CheckpointError, match="expected 'autoencoder'"):
        init_encoder_from(model, tmp_path / "d.pt")


@pytest.mark.parametrize("ae_depth, unet_depth, says", [
    (4, 2, "(12 of its 20 encoder tensors: the stem and levels 1-2; its levels 3-4 left out: "
           "the autoencoder has --depth 4, this model --depth 2)"),
    (3, 2, "(12 of its 16 encoder tensors: the stem and levels 1-2; its level 3 left out: "
           "the autoencoder has --depth 3, this model --depth 2)"),
    (1, 3, "(8 of its 8 encoder tensors: the stem and level 1; this model's levels 2-3 start random: "
           "the autoencoder has --depth 1, this model --depth 3)"),
    (2, 2, "(12 of its 12 encoder tensors: the stem and levels 1-2)"),
])
def test_init_encoder_from_logs_the_levels_it_left_out(tmp_path, ae_depth, unet_depth, says):
    """A deeper autoencoder gives only its first levels: the log line says which were dropped, and why."""
    ae = build_model("ae_base", width=4, depth=ae_depth)
    save_checkpoint(tmp_path / "ae.pt", make_checkpoint(ae, kind="autoencoder", model_name="ae_base",
                                                        model_config=dict(width=4, depth=ae_depth),
                                                        config={}))
    logs, unet = [], build_model("unet", width=4, depth=unet_depth)
    names = init_encoder_from(unet, tmp_path / "ae.pt", log=logs.append)
    assert logs == [f"encoder initialised from {tmp_path / 'ae.pt'} {says}"]
    assert len(names) == 4 + 4 * min(ae_depth, unet_depth)


def test_folder_given_as_checkpoint_suggests_files_in_it(tmp_path):
    for name in ("d.pt", "a.pt", "c.pt", "b.pt", "notes.txt"):
        (tmp_path / name).write_text("x")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path)
    assert str(err.value) == (f"{tmp_path}: is a folder; pass a checkpoint file such as "
                              f"{tmp_path / 'a.pt'}, {tmp_path / 'b.pt'} or {tmp_path / 'c.pt'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"empty: is a folder; .* such as models/denoiser_best\.pt$"):
        load_checkpoint(tmp_path / "empty")


def torch_reason(path):
    with pytest.raises(Exception) as err:
        torch.load(path, map_location="cpu", weights_only=True)
    return str(err.value)


@pytest.mark.parametrize("damage", ["truncated", "random bytes"])
def test_unloadable_file_quotes_a_whole_sentence_of_torchs_reason(tmp_path, damage):
    path = tmp_path / "m.pt"
    torch.save({"format_version": 1, "model": {"w": torch.zeros(500)}}, path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2] if damage == "truncated"
                     else bytes(torch.randint(0, 256, (2000,), generator=torch.Generator().manual_seed(0),
                                              dtype=torch.uint8).tolist()))
    reason = torch_reason(path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: ") and msg.endswith(")") and "\n" not in msg
    quoted = msg[msg.index("PyTorch file (") + len("PyTorch file ("):-1]
    assert quoted and quoted in reason
    after = reason[reason.index(quoted) + len(quoted):]
    assert after[:1] in ("", ".", "\n"), f"cut mid-sentence: {quoted!r} then {after[:30]!r}"


def test_long_reason_is_cut_at_a_word():
    why = load_failure(RuntimeError("the reader failed " * 30 + "at last. Then more."))
    quoted = why[why.index("(") + 1:-1]
    assert quoted.endswith("failed...") and len(quoted) <= 203 and "Then" not in quoted


def test_archive_moves_existing_files_and_never_overwrites_an_archived_one(tmp_path):
    from src.common.files import archive
    assert archive([tmp_path / "none.pt"]) == []
    moved = []
    for text in ("first", "second"):             # within the same second: the same stamp
        (tmp_path / "m_best.pt").write_text(text)
        moved += archive([tmp_path / "m_best.pt", tmp_path / "m_last.pt"])
    assert [p.read_text() for p in moved] == ["first", "second"] and len(set(moved)) == 2
    assert all(p.parent == tmp_path / "archive" for p in moved) and not (tmp_path / "m_best.pt").exists()
