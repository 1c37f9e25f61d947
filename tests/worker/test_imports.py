"""The worker process loads no export code: pyarrow stays with the API."""

from __future__ import annotations

import subprocess
import sys

from tests.test_layout import REPO_ROOT

WORKER_MODULES = ("worker.__main__", "worker.loop", "worker.queue", "worker.engine")


def test_the_worker_does_not_import_pyarrow():
    imports = "; ".join(f"import {module}" for module in WORKER_MODULES)
    check = f"{imports}; import sys; print(sorted(m for m in sys.modules if 'pyarrow' in m))"
    result = subprocess.run(
        [sys.executable, "-c", check], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
