# Two entry points for a fresh machine: `make demo` and `make test`.
PY     := .venv/bin/python
STAMP  := .venv/.installed
export NO_ALBUMENTATIONS_UPDATE := 1
export PYTHONUNBUFFERED := 1

.PHONY: install demo test bench clean

install: $(STAMP)

# Reinstall only when the dependency list changes.
$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	@# pip's log goes to a file (this machine's pip config is chatty); shown in full on failure
	$(PY) -m pip install -e '.[dev]' > .venv/install.log 2>&1 || (tail -50 .venv/install.log; exit 1)
	@# Augraphy (the general preset's degraded pages) without its opencv-python, which would replace
	@# opencv-python-headless's cv2; its other needs are in setup.cfg
	$(PY) -m pip install --no-deps augraphy==8.2.6 >> .venv/install.log 2>&1 || (tail -50 .venv/install.log; exit 1)
	$(PY) -c "import torch, albumentations, cv2, skimage, pandas, sklearn, augraphy; print('installed torch', torch.__version__)"
	touch $(STAMP)

# Train the quick recipe on competition/ (or the embedded synthetic set), write and validate a submission,
# and clean the test pages into submissions/cleaned/ as `denoise` cleans scans of your own.
demo: install
	$(PY) -m src.train_denoiser --preset quick
	$(PY) -m src.make_submission --checkpoint models/denoiser_best.pt --out submissions/submission.csv
	$(PY) -m src.validate_submission submissions/submission.csv
	@# the competition's test pages where training extracted them, else the synthetic set's
	$(PY) -m src.denoise $$(test -d competition/test && echo competition/test || echo competition/synthetic/test) \
		--checkpoint models/denoiser_best.pt --out submissions/cleaned
	@echo "cleaned test pages: submissions/cleaned/ (python -m src.denoise SCANS... --out DIR cleans your own)"

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) benchmarks/bench_writer.py

clean:
	rm -rf .venv *.egg-info .pytest_cache
