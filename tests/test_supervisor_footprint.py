"""The supervisor stays small (SPEC: RSS ≤ 50 MB on a Pi Zero 2 W, `edgelive bench
supervisor`): libraries that only a worker, the web console or an update needs are not
imported by `edgelive run` until they are used."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("aiohttp", "cryptography", "av", "numpy", "sdl2")


def test_the_supervisor_imports_no_worker_console_or_update_library() -> None:
    probe = ("import json, sys\n"
             "import edgelive.cli.run_cmd, edgelive.supervisor.box, edgelive.hw.gpio\n"
             "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=60, check=True)
    loaded = set(json.loads(run.stdout))
    assert "edgelive" in loaded
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
