"""`safeeval store merge`: fold store shards (other machines' stores) into one store."""

from __future__ import annotations

from pathlib import Path

import typer

from . import ui

app = typer.Typer(help="Work on run stores: merge other machines' stores (shards) into one.", no_args_is_help=True)

MERGE_HELP = """Merge store shards into one store: generations, verdicts, runs and judge validations.

Every shard is checked first (SQLite's integrity check, a safeeval store, a store version this safeeval reads); if any
fails, nothing is written. A key the store already holds keeps its value; when a shard's output for it differs
(bfloat16 decoding differs between machines), that is counted as a conflict and the shard's value is kept aside in the
store's merge_conflicts table. Runs and judge validations: the newer row wins. Merging a shard twice changes nothing.

[bold]Examples[/bold]

  safeeval store merge node1.sqlite node2.sqlite --into study.sqlite
  safeeval store merge ~/.cache/safeeval/store.sqlite --into /shared/team-store.sqlite
"""


@app.command("merge", help=MERGE_HELP)
def merge(
    shards: list[Path] = typer.Argument(..., help="Store files to merge (shards)."),
    into: Path | None = typer.Option(
        None,
        "--into",
        help="The store to merge into \\[default: $SAFEEVAL_STORE, else ~/.cache/safeeval/store.sqlite].",
    ),
):
    from ..files import store_path
    from ..store import Store, check_shard

    with ui.errors():
        for shard in shards:  # every shard checked before anything is written
            check_shard(shard)
        db = Store(store_path(into))
        try:
            counts = {str(shard): db.merge(shard) for shard in shards}
        finally:
            db.close()
    rows = [
        [shard, table, *(str(c.get(k, "-")) for k in ("added", "present", "conflicts", "replaced"))]
        for shard, by_table in counts.items()
        for table, c in by_table.items()
    ]
    ui.table(
        f"merged into {store_path(into)}",
        [
            ("shard", "left"),
            ("table", "left"),
            ("added", "right"),
            ("already present", "right"),
            ("in conflict", "right"),
            ("replaced (newer)", "right"),
        ],
        rows,
        "auto",
    )
    conflicts = sum(c.get("conflicts", 0) for by_table in counts.values() for c in by_table.values())
    if conflicts:
        ui.note(
            f"{conflicts} keys held a different value in a shard; the store kept its own, and the shard's are in "
            "its merge_conflicts table."
        )
