"""Run the quickstart's first code cells (parameters, find the service, log in) in this
process, as a kernel would, and hand back the names they define."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "quickstart.ipynb"


def run_first_cells(count: int = 3, **parameters: Any) -> dict[str, Any]:
    """Execute the first ``count`` code cells; ``parameters`` override the parameters cell
    (as papermill's injected cell does)."""
    cells = [c for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "code"]
    scope: dict[str, Any] = {}
    for number, cell in enumerate(cells[:count]):
        exec(compile("".join(cell["source"]), f"quickstart cell {number + 1}", "exec"), scope)
        if number == 0:
            scope.update(parameters)
    return scope
