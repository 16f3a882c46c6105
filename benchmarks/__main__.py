"""Run each benchmarks/bench_*.py main() in turn (or those named on the command line)."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time

import benchmarks


def _quiet() -> None:
    """Figures only: no per-request access lines, progress bars or per-matmul warnings."""
    import logging

    from transformers.utils import logging as hf_logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    # bitsandbytes logs its fp16 cast on every 8-bit matmul on CPU
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)


def main(names: list[str]) -> int:
    found = sorted(
        m.name for m in pkgutil.iter_modules(benchmarks.__path__) if m.name.startswith("bench_")
    )
    chosen = [n for n in found if not names or n in names or n.removeprefix("bench_") in names]
    if not chosen:
        print(f"no benchmark matches {names}; have: {', '.join(found) or 'none'}", file=sys.stderr)
        return 2
    _quiet()
    for name in chosen:
        print(f"\n=== {name} ===", flush=True)
        started = time.perf_counter()
        importlib.import_module(f"benchmarks.{name}").main()
        print(f"({name} took {time.perf_counter() - started:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
