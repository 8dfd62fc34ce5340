"""What a checkpoint holds beside the Trainer's own files, and what mix.jsonl tells.

- The method's state (Lisa's anchor, EWC's Fisher, ...), so a resumed run continues as the uninterrupted one did.
- The rows each step trained on, and on which process: the mix's rows by their place in the mix, and the rows a
  method drew from the safety set outside the mix (Lisa's alignment steps, DER's and A-GEM's replay batches).

Each process notes its own rows; the main process collects them at every checkpoint (into the checkpoint, so a
resume keeps the steps before it) and at the end, and alone writes the file.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from . import dist

STATE_FILE = "safeeval_state.pt"


class RowLog:
    def __init__(self, mix: list):
        self.mix = [(ex.id, ex.role) for ex in mix]  # index = place in the mix
        self.mine: list[tuple] = []  # (step, key) noted here since the last collection; key: mix index or replay id
        self.kept: list[tuple] = []  # (step, rank, key), collected (main process only)

    def note(self, step: int, keys) -> None:
        self.mine.extend((step, k) for k in keys)

    def collect(self) -> None:
        """A collective call: every process must make it at the same point."""
        gathered = dist.gather(self.mine)
        self.mine = []
        if dist.is_main():
            self.kept.extend((step, rank, key) for rank, entries in enumerate(gathered) for step, key in entries)

    def lines(self) -> list[dict]:
        """One line per row of the mix, in its order, then one per replay row used: id, role, and every
        (step, rank) that trained on it (empty: never trained, e.g. a Lisa alignment step took its place)."""
        trained = defaultdict(list)
        for step, rank, key in sorted(self.kept, key=lambda e: (e[0], e[1], str(e[2]))):
            trained[key].append([step, rank])
        rows = [{"id": ex_id, "role": role, "trained": trained.get(i, [])} for i, (ex_id, role) in enumerate(self.mix)]
        replay = sorted(k for k in trained if isinstance(k, str))
        return rows + [{"id": k, "role": "replay", "trained": trained[k]} for k in replay]


def save(folder: Path, method, rows: RowLog) -> None:
    """Into a checkpoint folder before the Trainer writes its trainer_state.json (its presence marks a complete
    checkpoint). Every process calls it; the main process writes."""
    import torch

    rows.collect()
    if not dist.is_main():
        return
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (STATE_FILE + ".tmp")
    torch.save({"method": method.state(), "rows": rows.kept}, tmp)
    tmp.replace(folder / STATE_FILE)


def load(folder: str | Path, device) -> dict | None:
    """The state saved with a checkpoint, or None for a checkpoint written before safeeval saved one."""
    import torch

    path = Path(folder) / STATE_FILE
    if not path.exists():
        return None
    return torch.load(path, map_location=device, weights_only=True)
