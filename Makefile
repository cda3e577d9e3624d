# The two set-up commands of the README. Both install what they need first.
.PHONY: setup bench test quick smoke

setup:
	bash scripts/setup.sh

# The main job: the benchmark on the embedded default (Fashion-MNIST), then the report.
# Two 1-thread workers: on 2 CPU cores they beat one 2-thread process (README, "Engines").
bench: setup
	.venv/bin/rem-unlearn bench --preset default --workers 2

test: setup
	.venv/bin/python -m pytest -q -p no:cacheprovider -n 2 --dist loadgroup --no-loadscope-reorder tests

quick: setup
	.venv/bin/rem-unlearn bench --preset quick

smoke: setup
	.venv/bin/rem-unlearn bench --preset smoke
