# Two commands a newcomer needs (see README.md). Progress bars are for people at a notebook; the
# rendered book shows the printed summaries instead (TQDM_DISABLE=1).
#   make book   install everything into .venv and build the book into _build/html (warnings are errors)
#   make test   run the unit tests and execute every chapter with nbval
#   make lab    open the chapters as notebooks in JupyterLab (jupytext reads the .md files)
#   make learner  write the learner's edition: every chapter as learner/NN_name.ipynb, solutions as text
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install book test lab learner clean

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

book: $(STAMP)
	TQDM_DISABLE=1 $(VENV)/bin/jupyter-book build . --warningiserror --keep-going

# pytest-xdist: one worker per core, each torch single-threaded (two processes of one thread each do twice
# the work of one process of two threads for the book's minibatches: benchmarks/README.md, book_timing.py).
# When nbval executes the chapters, all cells of a chapter must run in one worker, in order: --dist loadfile
# (one file per worker at a time; xdist 3.8's loadgroup cannot regroup items under pytest 9). After a book build
# (AE_COURSE_BOOK_EXECUTED=1, no nbval items) single tests are spread, the learner's chapters among them.
DIST := $(if $(filter-out 0,$(AE_COURSE_BOOK_EXECUTED)),load,loadfile)
test: $(STAMP)
	TQDM_DISABLE=1 OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m pytest -n auto --dist $(DIST)

lab: $(STAMP)
	$(VENV)/bin/jupyter-lab $(if $(filter 0,$(shell id -u)),--allow-root,)

learner: $(STAMP)
	$(PY) -m ae_course.learner_edition --out learner

clean:
	rm -rf _build
