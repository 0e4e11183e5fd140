# The two commands at the top of the README: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test demo clean

setup: $(STAMP)

# Reinstall only when the project's requirements change; `make setup` twice does nothing the second time.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	@# -qq: errors only; setuptools' notice about editable installs is not for users
	$(BIN)/python -m pip install -qq -e '.[test,ray]'
	@touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q

demo: setup
	$(BIN)/mgfn demo

clean:
	rm -rf $(VENV) data/demo
