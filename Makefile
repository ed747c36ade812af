# make demo: local broker + RTMP ingest + supervisor with the test source and a player.
# make test: every test against real servers (installs what it needs first).
.PHONY: setup test lint demo bench docs image clean

setup:
	@scripts/setup.sh

lint: setup
	.venv/bin/ruff check firmware tests image-build

test: setup lint
	.venv/bin/python -m pytest -q

demo: setup
	.venv/bin/edgelive demo

bench: setup
	.venv/bin/edgelive bench push

image: setup
	image-build/build.sh build/image

docs: setup
	.venv/bin/python -m edgelive.config.docs > docs/config.md
	.venv/bin/python -m edgelive.codes > docs/codes.md
	.venv/bin/python -m edgelive.verbs --write docs/mqtt-api.md

clean:
	rm -rf .venv .pytest_cache build *.egg-info
