"""Where numba keeps the compiled kernels: a folder keyed by the source of every module in eilab.sim.

numba's own cache is keyed by the file of each function only, but the kernels inline functions of other
files (step.advance inlines the neuron models of models.py): after an update of models.py alone it would
load an `advance` compiled from the old models. Keying the folder by all the sources rules that out. The
folder lies under $NUMBA_CACHE_DIR if set, else $XDG_CACHE_HOME/eilab-numba (default ~/.cache).
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path


def source_digest() -> str:
    """SHA-256 (16 hex digits) of the sources of eilab.sim, in file-name order."""
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def use_keyed_cache() -> str:
    """Point numba's cache at the folder of these sources (before any kernel is compiled); returns it.
    A NUMBA_CACHE_DIR that already names that folder (inherited from a parent process) is kept."""
    digest = source_digest()
    given = os.environ.get("NUMBA_CACHE_DIR")
    if given and Path(given).name == digest:
        folder = given
    else:
        base = given or str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "eilab-numba")
        folder = str(Path(base) / digest)
    os.environ["NUMBA_CACHE_DIR"] = folder  # read by numba when it is imported (the reader never imports it)
    numba = sys.modules.get("numba")
    if numba is not None:  # imported before eilab: its config already read
        numba.config.CACHE_DIR = folder
    return folder
