"""src.build_kernel, src.kaggle.kernel and src.kaggle.bundle: the kernel folder, its metadata, and the
generated script run the way Kaggle runs it (only the code file, a /kaggle-like root, no project on the
path)."""
from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
import shutil
import subprocess
import sys
import textwrap

from conftest import zip_competition
import pytest
import torch

from src.build_kernel import main
from src.data import competition as data
from src.data.competition import CLEAN, COMPETITION, SAMPLE, TEST, TRAIN
from src.kaggle import kernel
from src.kaggle.bundle import CODE_FILE, embed, import_order, needed_modules, render_bundle
from src.kaggle.kernel import find_checkpoint, kernel_data
from src.models.checkpoints import make_checkpoint, save_checkpoint
from src.models.registry import build_model
from src.submission.reader import validate_submission

PROJECT = Path(__file__).resolve().parents[1]
PACKAGES = {"common", "data", "models", "training", "inference", "submission", "mnist", "kaggle"}
KID = "user/my-denoiser"
WEIGHTS_ID = "user/my-denoiser-weights"


# ---------------------------------------------------------------- a /kaggle-like root

@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> Path:
    from src.data.synthetic import make_synthetic_competition

    return make_synthetic_competition(tmp_path_factory.mktemp("pages"), n_train=4, n_test=2)


def kaggle_root(root: Path, pages: Path, layout: str) -> Path:
    """root/input/... as Kaggle mounts the competition: the inner zips, or (newer) extracted folders."""
    if layout == "zips":
        comp = zip_competition(pages, root / "input" / COMPETITION)
    else:
        comp = root / "input" / "competitions" / COMPETITION
        for name in (TRAIN, CLEAN, TEST):
            shutil.copytree(pages / name, comp / name)
        shutil.copy(pages / SAMPLE, comp / SAMPLE)
    return root


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))}


def run_script(code: Path, root: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run the code file alone (all `kaggle kernels push` uploads) from a folder with no src/ in it."""
    where = tmp_path / "kaggle_session"
    where.mkdir()
    script = where / code.name
    shutil.copy(code, script)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(KAGGLE_ROOT=str(root), KERNEL_DEBUG_MODULES="1", PYTHONUNBUFFERED="1")
    env.pop("NO_ALBUMENTATIONS_UPDATE", None)   # the script sets it itself
    proc = subprocess.run([sys.executable, str(script)], cwd=where, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    modules = dict(line.split()[2:4] for line in proc.stdout.splitlines()
                   if line.startswith("kernel module "))
    assert {"src", "src.data.competition", "src.training.denoiser", "src.submission.predict",
            "src.submission.writer"} <= set(modules)
    for name, file in modules.items():   # every src module came from the script, none from the project
        assert file.startswith(str(script) + os.sep), (name, file)
        assert not file.startswith(str(PROJECT / "src")), (name, file)
    return proc


def check_submission(root: Path, pages: Path) -> None:
    report = validate_submission(root / "working" / "submission.csv", sample=pages / SAMPLE)
    assert report.ok, report.problems
    assert report.rows == sum(1 for _ in open(pages / SAMPLE)) - 1


def tiny_checkpoint(path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = build_model("unet", width=4, depth=1)
    save_checkpoint(path, make_checkpoint(model, kind="denoiser", model_name="unet",
                                          model_config=dict(width=4, depth=1),
                                          config=dict(tile=128, overlap=16, tta=False)))
    return path


# ---------------------------------------------------------------- the kernel, end to end

def test_train_kernel_runs_on_a_kaggle_like_root_without_the_project(tmp_path, pages, capsys):
    out = tmp_path / "kernel"
    assert main(["--id", KID, "--train", "--preset", "smoke", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for step in (f"kaggle kernels push -p {out}", f"kaggle kernels status {KID}",
                 f"kaggle kernels output {KID} -p out/",
                 f'kaggle competitions submit {COMPETITION} -f out/submission.csv -m "kernel {KID}"',
                 "/kaggle/working/submission.csv", "Output tab",
                 f"https://www.kaggle.com/competitions/{COMPETITION}/submissions"):
        assert step in printed, step
    assert "kaggle datasets create" not in printed and not (out / "weights").exists()

    root = kaggle_root(tmp_path / "kaggle", pages, "zips")
    before = snapshot(root / "input")
    proc = run_script(out / CODE_FILE, root, tmp_path)
    check_submission(root, pages)
    assert "OK:" in proc.stdout and "valid submission" in proc.stdout
    assert (root / "working" / "models" / "denoiser_best.pt").is_file()
    assert not (root / "working" / "data").exists()    # extracted pages are not left in the Output tab
    assert snapshot(root / "input") == before          # the read-only mount was only read


def test_checkpoint_kernel_reads_the_weights_dataset(tmp_path, pages, capsys):
    ckpt = tiny_checkpoint(tmp_path / "models" / "denoiser_best.pt")
    out = tmp_path / "kernel"
    assert main(["--id", KID, "--checkpoint", str(ckpt), "--out", str(out), "--gpu"]) == 0
    printed = capsys.readouterr().out
    assert f"kaggle datasets create -p {out / 'weights'}" in printed
    assert printed.index("kaggle datasets create") < printed.index("kaggle kernels push")
    meta = json.loads((out / "weights" / "dataset-metadata.json").read_text())
    assert meta == {"title": "My Denoiser Weights", "id": WEIGHTS_ID, "licenses": [{"name": "CC0-1.0"}]}
    assert (out / "weights" / "denoiser_best.pt").read_bytes() == ckpt.read_bytes()

    # a rebuild from the shipped copy itself (after a code change) keeps it
    shipped = out / "weights" / "denoiser_best.pt"
    assert main(["--id", KID, "--checkpoint", str(shipped), "--out", str(out), "--gpu"]) == 0
    assert shipped.read_bytes() == ckpt.read_bytes() and sorted(p.name for p in out.iterdir()) == sorted(
        [CODE_FILE, "kernel-metadata.json", "weights"])

    root = kaggle_root(tmp_path / "kaggle", pages, "folders")
    shutil.copytree(out / "weights", root / "input" / "my-denoiser-weights")   # how Kaggle mounts the dataset
    proc = run_script(out / CODE_FILE, root, tmp_path)
    check_submission(root, pages)
    assert f"checkpoint {root / 'input' / 'my-denoiser-weights' / 'denoiser_best.pt'}" in proc.stdout
    # the same file as make_submission's defaults (TTA on), not the checkpoint's validation settings
    from src import make_submission
    assert make_submission.main(["--checkpoint", str(ckpt), "--data-dir", str(pages),
                                 "--out", str(tmp_path / "here.csv")]) == 0
    assert (root / "working" / "submission.csv").read_bytes() == (tmp_path / "here.csv").read_bytes()


def test_several_checkpoints_ship_together_and_the_kernel_averages_them(tmp_path, pages, capsys):
    a = tiny_checkpoint(tmp_path / "a" / "x_best.pt", seed=1)
    b = tiny_checkpoint(tmp_path / "y_best.pt", seed=2)
    out = tmp_path / "kernel"
    assert main(["--id", KID, "--checkpoint", str(a), "--checkpoint", str(b), "--out", str(out)]) == 0
    assert f"loads x_best.pt, y_best.pt, averaged from dataset {WEIGHTS_ID}" in capsys.readouterr().out
    root = kaggle_root(tmp_path / "kaggle", pages, "zips")
    shutil.copytree(out / "weights", root / "input" / "my-denoiser-weights")
    proc = run_script(out / CODE_FILE, root, tmp_path)
    for name in ("x_best.pt", "y_best.pt"):
        assert f"checkpoint {root / 'input' / 'my-denoiser-weights' / name}" in proc.stdout
    from src import make_submission
    assert make_submission.main(["--checkpoint", str(a), "--checkpoint", str(b), "--data-dir", str(pages),
                                 "--out", str(tmp_path / "here.csv")]) == 0
    assert (root / "working" / "submission.csv").read_bytes() == (tmp_path / "here.csv").read_bytes()
    assert make_submission.main(["--checkpoint", str(a), "--data-dir", str(pages),
                                 "--out", str(tmp_path / "a.csv")]) == 0
    assert (tmp_path / "a.csv").read_bytes() != (tmp_path / "here.csv").read_bytes()   # both count

    for twin in ("x_best.pt", "X_best.pt"):   # one file on macOS's and Windows' disks
        twin = tiny_checkpoint(tmp_path / "b" / twin)
        assert main(["--id", KID, "--checkpoint", str(a), "--checkpoint", str(twin), "--out", str(out)]) == 1
        alike = ", ".join(sorted({"x_best.pt", twin.name}))
        assert (f"error: checkpoints named alike ({alike}): the weights dataset holds them in one folder"
                in capsys.readouterr().err)
    (tmp_path / "afile").write_text("kept")
    assert main(["--id", KID, "--checkpoint", str(a), "--out", str(tmp_path / "afile")]) == 1
    err, afile = capsys.readouterr().err, tmp_path / "afile"
    assert err.startswith(f"error: --out {afile}: is a file, not a folder") and err.count("\n") == 1
    assert (tmp_path / "afile").read_text() == "kept"


@pytest.mark.parametrize("failure", ["no weights dataset", "a crash"])
def test_a_failed_kernel_run_leaves_no_extracted_data_behind(tmp_path, pages, monkeypatch, failure):
    root = kaggle_root(tmp_path / "kaggle", pages, "zips")
    monkeypatch.setenv("KAGGLE_ROOT", str(root))
    data_dir = root / "working" / "data"
    said = []   # (message, whether working/data existed then): the failure came after the extraction
    plan = {"mode": "checkpoint", "id": KID, "checkpoints": ["denoiser_best.pt"], "dataset": WEIGHTS_ID}
    if failure == "a crash":   # not one of the errors run_kernel reports: its traceback ends the kernel
        def crash(*args, **kwargs):
            raise RuntimeError("CUDA error: out of memory")
        monkeypatch.setattr(kernel, "find_checkpoint", crash)
        with pytest.raises(RuntimeError, match="out of memory"):
            kernel.run_kernel(plan, log=lambda m: said.append((m, data_dir.exists())))
    else:
        assert kernel.run_kernel(plan, log=lambda m: said.append((m, data_dir.exists()))) == 1
        assert said[-1][0].startswith("error: no denoiser_best.pt") and said[-1][1]
    summary = f"competition data in {data_dir}: 4 training pairs"
    assert any(m.startswith(summary) and existed for m, existed in said), said
    assert not data_dir.exists() and data_dir.parent.is_dir()


@pytest.mark.parametrize("layout", ["zips", "folders"])
def test_kernel_data_prepares_either_mount_into_working(tmp_path, pages, layout):
    root = kaggle_root(tmp_path, pages, layout)
    before = snapshot(root / "input")
    got = kernel_data(root)
    assert got.root == root / "working" / "data"
    assert len(got.train_pairs) == 4 and len(got.test_images) == 2 and got.sample_submission is not None
    assert snapshot(root / "input") == before


def test_kernel_data_without_the_competition_says_what_to_attach(tmp_path):
    (tmp_path / "input").mkdir()
    with pytest.raises(data.DataError, match="competition_sources"):
        kernel_data(tmp_path)


def test_find_checkpoint_prefers_the_shipped_file_in_its_dataset(tmp_path):
    inputs = tmp_path / "input"
    for rel in ("other/denoiser_best.pt", "datasets/user/my-denoiser-weights/denoiser_best.pt", "x/old.pt"):
        (inputs / rel).parent.mkdir(parents=True, exist_ok=True)
        (inputs / rel).write_bytes(b"")
    got = find_checkpoint(inputs, "denoiser_best.pt", WEIGHTS_ID)
    assert got == inputs / "datasets/user/my-denoiser-weights/denoiser_best.pt"
    # the dataset is attached but holds other weights: an older version, never used in its stead
    with pytest.raises(Exception, match=r"no fold0\.pt in dataset user/my-denoiser-weights, which holds "
                                        r"denoiser_best\.pt: an older version of it; run `kaggle datasets "
                                        r"version -p kernel/weights"):
        find_checkpoint(inputs, "fold0.pt", WEIGHTS_ID)
    shutil.rmtree(inputs / "datasets")
    with pytest.raises(Exception, match="attach dataset user/my-denoiser-weights"):   # not x/old.pt either
        find_checkpoint(inputs, "old2.pt", WEIGHTS_ID)
    (inputs / "my-denoiser-weights").mkdir()
    (inputs / "my-denoiser-weights" / "fold0.pth").write_bytes(b"")   # any suffix torch.save was given
    assert find_checkpoint(inputs, "fold0.pth", WEIGHTS_ID) == inputs / "my-denoiser-weights" / "fold0.pth"


# ---------------------------------------------------------------- metadata

def test_metadata_fields_by_mode(tmp_path):
    assert main(["--id", KID, "--train", "--out", str(tmp_path / "a")]) == 0
    train = json.loads((tmp_path / "a" / "kernel-metadata.json").read_text())
    assert train == {"id": KID, "title": "My Denoiser", "code_file": CODE_FILE, "language": "python",
                     "kernel_type": "script", "is_private": True, "enable_gpu": False, "enable_tpu": False,
                     "enable_internet": False, "competition_sources": [COMPETITION]}
    ckpt = tiny_checkpoint(tmp_path / "m.pt")
    assert main(["--id", KID, "--title", "My denoiser!", "--checkpoint", str(ckpt), "--gpu",
                 "--out", str(tmp_path / "b")]) == 0
    inference = json.loads((tmp_path / "b" / "kernel-metadata.json").read_text())
    assert inference["dataset_sources"] == [WEIGHTS_ID] and inference["enable_gpu"] is True
    assert inference["title"] == "My denoiser!" and inference["enable_internet"] is False
    plan = (tmp_path / "b" / CODE_FILE).read_text()
    assert "'checkpoints': ['m.pt']" in plan and f"'dataset': '{WEIGHTS_ID}'" in plan


KAGGLE_CHECK = textwrap.dedent('''
    """Run the kaggle package's own push/create validation with its network client replaced."""
    import contextlib, io, json, socket, sys

    def blocked(*args, **kwargs):
        raise OSError("network blocked by test_build_kernel")
    socket.socket.connect = socket.create_connection = socket.getaddrinfo = blocked

    # kaggle/__init__ authenticates on import: with a key in the environment, without a request
    from kaggle.api.kaggle_api_extended import KaggleApi

    class Client:            # what kernels_push would send, instead of sending it
        request = None
        def __enter__(self): return self
        def __exit__(self, *exc): return False
        kernels = kernels_api_client = property(lambda self: self)
        def save_kernel(self, request): Client.request = request

    class Sent(Exception):
        pass

    def dataset_status(ref):  # the first network call of dataset_create_new, after its checks
        raise Sent(ref)

    api = KaggleApi()
    api.authenticate()
    api.build_kaggle_client = Client
    api.dataset_status = dataset_status
    report = {}
    for folder in sys.argv[1:]:
        printed = io.StringIO()
        try:
            with contextlib.redirect_stdout(printed):
                api.kernels_push(folder)
        except ValueError as e:
            report[folder] = {"error": str(e)}
            continue
        r = Client.request
        entry = dict(printed=printed.getvalue(), slug=r.slug, title=r.new_title, language=r.language,
                     kernel_type=r.kernel_type, is_private=r.is_private, enable_gpu=r.enable_gpu,
                     enable_internet=r.enable_internet, datasets=list(r.dataset_data_sources),
                     competitions=list(r.competition_data_sources), text=len(r.text))
        try:
            api.dataset_create_new(folder + "/weights")
        except Sent as e:
            entry["dataset_checked"] = str(e)
        except ValueError as e:
            entry["dataset_error"] = str(e)
        report[folder] = entry
    print(json.dumps(report))
''')


def test_metadata_passes_the_kaggle_packages_own_checks(tmp_path):
    """kernels_push and dataset_create_new validate before their first request: run them for real,
    with fake legacy credentials (so importing kaggle authenticates without a request), an empty
    config folder and home (no token file that would be checked online), sockets blocked, and the
    client that would send the kernel replaced by one that records the request."""
    train, infer, bad = tmp_path / "train", tmp_path / "infer", tmp_path / "bad"
    assert main(["--id", KID, "--train", "--out", str(train)]) == 0
    ckpt = tiny_checkpoint(tmp_path / "m.pt")
    assert main(["--id", KID, "--checkpoint", str(ckpt), "--out", str(infer)]) == 0
    shutil.copytree(train, bad)
    meta = json.loads((bad / "kernel-metadata.json").read_text())
    (bad / "kernel-metadata.json").write_text(json.dumps({**meta, "title": "Abc"}))   # the harness must bite
    (tmp_path / "home").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_")}
    env.update(HOME=str(tmp_path / "home"), KAGGLE_CONFIG_DIR=str(tmp_path / "home"),
               KAGGLE_USERNAME="user", KAGGLE_KEY="0123456789abcdef")
    proc = subprocess.run([sys.executable, "-c", KAGGLE_CHECK, str(train), str(infer), str(bad)],
                          env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report[str(bad)] == {"error": "Title must be at least five characters"}
    for folder, datasets in ((train, []), (infer, [WEIGHTS_ID])):
        got = report[str(folder)]
        assert got["printed"] == ""   # kaggle prints a warning when the title does not resolve to the id
        assert (got["slug"], got["title"]) == (KID, "My Denoiser")
        assert (got["language"], got["kernel_type"]) == ("python", "script")
        assert got["is_private"] is True and got["enable_internet"] is False and got["enable_gpu"] is False
        assert got["competitions"] == [COMPETITION] and got["datasets"] == datasets
        assert got["text"] == (folder / CODE_FILE).stat().st_size
    assert report[str(infer)]["dataset_checked"] == WEIGHTS_ID


@pytest.mark.parametrize("argv, message", [
    (["--id", "my-denoiser"], "want <username>/<kernel-slug>"),
    (["--id", "user/my-denoiser/3"], "want <username>/<kernel-slug>"),
    (["--id", "user/My_Denoiser"], "'my-denoiser'"),
    (["--id", "user/abc"], "at least five characters"),
    (["--id", "User Name/my-denoiser"], "username 'User Name'"),
    (["--id", KID, "--title", "Abc"], "title of at least five characters"),
    (["--id", KID, "--title", "Something Else"],
     "slugifies to 'something-else', not to the id's slug 'my-denoiser'"),
])
def test_bad_id_or_title_is_a_usage_error_with_a_clear_message(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--train", "--out", str(tmp_path / "k")])
    assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "k").exists()


def test_bad_checkpoint_exits_1_and_too_long_a_slug_2(tmp_path, capsys):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    assert main(["--id", KID, "--checkpoint", str(tmp_path / "junk.pt"), "--out", str(tmp_path / "k")]) == 1
    assert "not a loadable checkpoint" in capsys.readouterr().err
    long = "user/" + "-".join(["denoiser"] * 5)    # 44 characters: the weights slug would exceed 50
    ckpt = tiny_checkpoint(tmp_path / "m.pt")
    with pytest.raises(SystemExit) as exit_:
        main(["--id", long, "--checkpoint", str(ckpt), "--out", str(tmp_path / "k")])
    assert exit_.value.code == 2 and "Kaggle wants 6-50 characters" in capsys.readouterr().err


def test_train_flags_pass_through_and_are_checked_at_build_time(tmp_path, capsys):
    out = tmp_path / "k"
    assert main(["--id", KID, "--train", "--preset", "quick", "--epochs", "3", "--out", str(out)]) == 0
    assert "'preset': 'quick', 'train_args': ['--epochs', '3']" in (out / CODE_FILE).read_text()
    capsys.readouterr()
    for bad, said in ((["--epochz", "3"], "unrecognized arguments: --epochz 3"),
                      (["--epochs", "0"], "--epochs 0: must be at least 1")):
        with pytest.raises(SystemExit) as exc:   # argparse's exit code for a bad flag, before anything runs
            main(["--id", KID, "--train", *bad, "--out", str(out)])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and f"python -m src.build_kernel --train: error: {said}" in err
        assert len(err.splitlines()) == 2, err   # the usage line and the error, not every training flag
    for flags in (["--data-dir", "d"], ["--models-dir=m"]):   # the kernel's own folders win
        with pytest.raises(SystemExit):
            main(["--id", KID, "--train", *flags, "--out", str(out)])
        assert f"{flags[0].split('=')[0]}: the kernel reads the competition" in capsys.readouterr().err
    assert main(["--id", KID, "--train", "--device", "cuda", "--out", str(out)]) == 1
    assert "--device cuda needs a GPU kernel: add --gpu" in capsys.readouterr().err
    assert main(["--id", KID, "--train", "--device", "cuda", "--gpu", "--out", str(out)]) == 0
    assert main(["--id", KID, "--train", "--no-resume", "--out", str(out)]) == 0
    for flags in (["--epochs", "3"], ["--preset", "smoke"]):   # training flags without --train
        with pytest.raises(SystemExit):
            main(["--id", KID, "--checkpoint", "m.pt", *flags])


@pytest.mark.parametrize("flags, said", [
    (["--init-from", "models/mnist_base.pt"],
     "--init-from models/mnist_base.pt: the kernel cannot read files from this machine; train here with "
     "--init-from, then ship the weights with --checkpoint"),
    (["--init-from=/nonexistent.pt"], "--init-from /nonexistent.pt: the kernel cannot read files"),
    (["--resume"], "--resume: a fresh kernel has no earlier run to resume"),
    (["--degraded", "0.3"], "(--degraded): Kaggle's image has no Augraphy; train here"),
])
def test_train_flags_that_need_this_machine_are_refused_at_build_time(tmp_path, capsys, flags, said):
    """The kernel would fail on Kaggle, after the queue (`error: ...: checkpoint not found`)."""
    out = tmp_path / "k"
    assert main(["--id", KID, "--train", "--preset", "smoke", *flags, "--out", str(out)]) == 1
    assert said in capsys.readouterr().err
    assert not out.exists()


def test_readme_submits_the_kernel_output_as_the_builder_says(capsys, tmp_path):
    """src.submit needs the competition's sample submission, which a clone without the data lacks."""
    readme = (PROJECT / "README.md").read_text()
    section = readme.split("## Run it as a Kaggle kernel")[1].split("\n## ")[0]
    assert main(["--id", KID, "--train", "--out", str(tmp_path / "k")]) == 0
    printed = capsys.readouterr().out
    command = f"kaggle competitions submit {COMPETITION} -f out/submission.csv -m"
    assert command in printed and command in section
    if "src.submit" in section:   # it checks ids against the sample submission, or refuses
        assert "needs the competition data here (or `--sample`)" in section


# ---------------------------------------------------------------- the bundle

def test_bundle_is_generated_from_the_package_source(tmp_path):
    text = render_bundle("src.kaggle.kernel", "run_kernel", {"mode": "train"})
    assert inspect.getsource(data.prepare_data) in text
    assert inspect.getsource(kernel.run_kernel) in text
    for name, module in needed_modules("src.kaggle.kernel").items():
        assert module.source in text, f"{name} is not embedded verbatim"
    # regenerated, not kept: an edited copy of the package gives an edited bundle
    pkg = tmp_path / "src"
    shutil.copytree(PROJECT / "src", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    src = (pkg / "inference" / "metrics.py").read_text()
    (pkg / "inference" / "metrics.py").write_text(src + "\n\ndef brand_new_metric():\n    return 42\n")
    edited = render_bundle("src.kaggle.kernel", "run_kernel", {}, package_dir=pkg)
    assert "def brand_new_metric():" in edited and "def brand_new_metric():" not in text


def test_needed_modules_follow_eager_and_lazy_imports_only():
    modules = needed_modules("src.kaggle.kernel")
    assert {"src", "src.data.competition", "src.data.synthetic", "src.training.denoiser",
            "src.submission.predict"} <= set(modules)
    # no command, and nothing the kernel does not run: the Kaggle API, the validator's command
    assert not {m for m in modules if m.count(".") == 1 and m.split(".")[1] not in PACKAGES}
    assert "src.kaggle.api" not in modules
    order, cycles = import_order(modules)
    assert not cycles
    at = order.index
    assert order[0] == "src" and at("src.data.competition") < at("src.data.synthetic")
    assert at("src.submission.writer") < at("src.submission.predict") < at("src.kaggle.kernel")


def write_package(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / "src" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "src" / rel).write_text(textwrap.dedent(text))
    return root / "src"


def test_import_order_on_a_made_up_package(tmp_path):
    pkg = write_package(tmp_path, {
        "__init__.py": "",
        "a.py": "from src import b\nimport src.sub.c as c\n",
        "b.py": "X = 1\ndef f():\n    from src.lazy import Y\n",
        "lazy.py": "from src.a import b\nY = 2\n",
        "sub/__init__.py": "",
        "sub/c.py": "from .. import b\nfrom . import d\n",
        "sub/d.py": "import os\nclass K:\n    import src.b\n",
        "unused.py": "",
    })
    modules = needed_modules("src.a", pkg)
    assert set(modules) == {"src", "src.a", "src.b", "src.lazy", "src.sub", "src.sub.c", "src.sub.d"}
    assert modules["src.b"].lazy == {"src", "src.lazy"}
    assert modules["src.sub.c"].eager == {"src", "src.b", "src.sub", "src.sub.d"}   # relative imports
    order, cycles = import_order(modules)
    assert cycles == []
    for name, module in modules.items():
        assert all(order.index(dep) < order.index(name) for dep in module.eager), name
    # a module-level cycle (Python allows it) is reported, and the bundle still imports it like disk does
    (pkg / "b.py").write_text("X = 1\nfrom src.a import *\n")
    assert import_order(needed_modules("src.a", pkg))[1] == [["src.a", "src.b", "src.a"]]


def test_bundled_script_resolves_imports_like_the_disk_package(tmp_path):
    pkg = write_package(tmp_path / "proj", {
        "__init__.py": "",
        "entry.py": '''
            import src.first
            def run(plan):
                from src.later import VALUE          # lazy
                import src.ghost_that_is_not_bundled  # must not be found on disk either
            def ok(plan):
                from src.later import VALUE
                print("value", VALUE, plan["n"], src.first.NAME, src.first.__file__)
                return 0
            ''',
        "first.py": "NAME = __name__\nfrom src import second\n",
        "second.py": "from src import first\nPARTNER = first.NAME\n",   # a module-level cycle
        "later.py": "VALUE = 'x\\\\y' + '''q'''\n",                     # backslashes and triple quotes
    })
    (pkg / "ghost_that_is_not_bundled.py").write_text("")   # written after the bundle's scan
    for function, code in (("ok", 0), ("run", 1)):
        script = tmp_path / f"{function}.py"
        (pkg / "ghost_that_is_not_bundled.py").unlink(missing_ok=True)
        script.write_text(render_bundle("src.entry", function, {"n": 7}, package_dir=pkg))
        (pkg / "ghost_that_is_not_bundled.py").write_text("")
        env = {**os.environ, "PYTHONPATH": str(tmp_path / "proj")}    # even with the project importable
        proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path / "proj", env=env,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == code, proc.stderr
        if function == "ok":
            assert proc.stdout.split()[:4] == ["value", "x\\y" + "q", "7", "src.first"]
            assert proc.stdout.split()[4] == str(script / "src" / "first.py")
        else:
            assert "No module named 'src.ghost_that_is_not_bundled'" in proc.stderr


def test_embed_is_verbatim_when_it_can_be_and_exact_always():
    sources = ("x = 1\n", "s = '''a'''\n", 's = """a"""\n', "p = r'\\d'\n",
               "a = '''x'''\nb = \"\"\"y\"\"\"\n")   # the last one needs escapes
    for source in sources:
        literal = embed(source)
        assert eval(literal) == source
        if not ("'''" in source and '"""' in source):
            assert source in literal
