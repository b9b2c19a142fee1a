"""The Python example in README runs as written (paths pointed at temporary files)."""
from __future__ import annotations

from pathlib import Path
import re

import numpy as np

from src.data.pages import list_images, load_page
from src.models.checkpoints import make_checkpoint, save_checkpoint
from src.models.registry import build_model

README = Path(__file__).resolve().parents[1] / "README.md"


def test_python_example_runs(tmp_path, synthetic_dir, capsys):
    section = README.read_text().split("## From Python")[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    ckpt, page, out = tmp_path / "m.pt", list_images(synthetic_dir / "test")[0], tmp_path / "1_clean.png"
    save_checkpoint(ckpt, make_checkpoint(build_model("unet", width=4, depth=1), kind="denoiser",
                                          model_name="unet", model_config=dict(width=4, depth=1),
                                          config=dict(preset="smoke"), epoch=2, best_score=0.1))
    for old, new in [("models/denoiser_best.pt", ckpt), ("competition/test/1.png", page),
                     ("submissions/1_clean.png", out), ("competition/test", synthetic_dir / "test")]:
        assert f'"{old}"' in code, old
        code = code.replace(f'"{old}"', repr(str(new)))
    exec(compile(code, str(README), "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("smoke 2 0.10000 ") and printed[1].startswith("2 pages")
    assert load_page(out).shape == load_page(page).shape and np.ptp(load_page(out)) > 0
