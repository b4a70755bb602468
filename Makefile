.PHONY: demo test bench bench-setup install

# Run the gateway with the built-in demo on http://127.0.0.1:8080 (installs what it needs first).
demo:
	scripts/demo.sh

# Run the whole test suite (installs what it needs first, runs in a loopback-only network namespace).
test:
	scripts/test.sh

install:
	scripts/setup.sh

# Accept -> first frame at the agent, p50 over 20 calls.
bench-setup:
	scripts/setup.sh --test
	.venv/bin/python -m bench.setup_latency --calls 20

# Relay capacity and call-setup benchmark against the frame relay, a transcoding relay and Janus (apt: janus).
bench:
	scripts/setup.sh --test
	.venv/bin/python -m pip install --quiet -e ".[test,bench,fast]"
	command -v janus >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq janus)
	.venv/bin/python -m bench.run
