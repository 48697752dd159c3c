# Project tasks. `make fixtures` needs root (network namespaces, strace); the rest does not.
# They run in the project's virtual environment .venv (scripts/test.sh or scripts/demo.sh
# creates it); the corpus's setup steps run `python3 -m conntrack_tools.fixture.traffic`,
# so .venv/bin comes first on their PATH (every conntrack they run is /usr/sbin/conntrack).
PYTHON ?= .venv/bin/python
JOBS ?= 2
export PATH := $(CURDIR)/.venv/bin:$(PATH)

.PHONY: fixtures fixture-tests fixture-coverage sync-fixtures

# Re-record the whole fixture corpus from the reference /usr/sbin/conntrack
# (tools/fixture/corpus.py; one private network namespace per scenario).
fixtures:
	$(PYTHON) -m conntrack_tools.fixture.corpus --dir fixtures -j $(JOBS)
	$(PYTHON) -m conntrack_tools.fixture coverage --dir fixtures > /dev/null

# The fixture tests: no root, no kernel.
fixture-tests:
	$(PYTHON) -m pytest -q tests/fixtures

# Which CTA_* attributes the corpus holds, and why the others are missing.
fixture-coverage:
	$(PYTHON) -m conntrack_tools.fixture coverage --dir fixtures --paths

# Re-record the conntrackd sync corpus (fixtures/sync) from pairs of C conntrackd 1.4.7
# in private namespaces (tools/fixture/synccorpus.py; root; about two minutes).
sync-fixtures:
	$(PYTHON) -m conntrack_tools.fixture.synccorpus --dir fixtures/sync
