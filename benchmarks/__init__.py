"""Benchmarks: `make bench` runs every `bench_*` module here and prints its ratios."""

# Greedy sampling as the raw engines run it: the API would otherwise add the model's catalog
# defaults (the default model's repetition penalty 1.1), and API and raw runs would differ.
GREEDY = {"temperature": 0, "repetition_penalty": 1}
