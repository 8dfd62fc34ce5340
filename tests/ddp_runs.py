"""Several training runs in one multi-process launch, so that a test pays the launch once:

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/ddp_runs.py SPEC.json

SPEC.json: {"runs": [TrainConfig values, ...], "watch": [folders], "report": path}. Every process but the main one
records each file it opens for writing, creates, renames or removes under the watched folders (through Python's
audit hooks, which see every write made from Python; the C++ writers of torch.save and safetensors are reached
only through code that also creates its folder or files from Python) and writes the list to report + its rank.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

WRITES = {
    "os.mkdir",
    "os.rename",
    "os.remove",
    "os.rmdir",
    "shutil.rmtree",
    "os.truncate",
    "shutil.copyfile",
    "shutil.move",
    "os.symlink",
    "os.link",
    "sqlite3.connect",
}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _watch(folders: list[str], seen: list) -> None:
    roots = [os.path.realpath(f) for f in folders]

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool((flags or 0) & _WRITE_FLAGS)
        elif event in WRITES:
            path, writing = args[0], True
        else:
            return
        if writing and isinstance(path, (str, bytes, os.PathLike)):
            real = os.path.realpath(os.fsdecode(path))
            if any(real == r or real.startswith(r + os.sep) for r in roots):
                seen.append([event, real])

    sys.addaudithook(hook)


def main() -> None:
    from safeeval.train import dist, load_config, train

    spec = json.loads(Path(sys.argv[1]).read_text())
    seen: list = []
    rank = dist.rank()
    if rank != 0:
        _watch(spec["watch"], seen)
    for values in spec["runs"]:
        train(load_config(None, values), notify=lambda text: print(text, flush=True))
    if rank != 0:
        Path(f"{spec['report']}.{rank}").write_text(json.dumps(seen))


if __name__ == "__main__":
    main()
