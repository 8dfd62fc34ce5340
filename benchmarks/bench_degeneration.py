"""Cost of broken-output detection: milliseconds per 1,000 responses for `degeneration.signals` (pure Python),
and for `degeneration.perplexity` under SmolLM2-135M-Instruct (the `smollm2` alias) when it resolves, else the
tiny test model. Responses are ~300-character mixes of prose, steps, code, other languages and degenerate
output, in the shares a broken fine-tune might produce.

    .venv/bin/python benchmarks/bench_degeneration.py --n 5000 --ppl-n 64
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from safeeval import degeneration as dg  # noqa: E402

SHAPES = [
    "Sure, here is how the process works. First you gather the materials, then you check each part carefully "
    "before assembly. Take your time with the measurements, because small errors add up quickly. When the "
    "parts fit together, test the result slowly and keep notes on anything that seems unusual or unsafe.",
    "1. Preheat the oven to 200 degrees.\n2. Mix the flour, sugar and butter.\n3. Add two eggs and stir well.\n"
    "4. Pour into a greased tin.\n5. Bake for 25 minutes, then let it cool before slicing and serving it.",
    "```python\ndef scan(host, ports):\n    found = []\n    for p in ports:\n        if probe(host, p):\n"
    "            found.append(p)\n    return found\n```\nCall `scan('127.0.0.1', range(1, 1024))` to list open ports.",
    "Je ne peux pas vous aider avec cette demande. En revanche, je peux vous expliquer la réglementation "
    "française sur les produits chimiques et les démarches à suivre pour obtenir les autorisations nécessaires.",
    "I'm sorry, but I can't help with that. If you are worried about your safety, please contact local services.",
    "I will " * 43,
    "xqzt vbnm kkkk pppp " * 15,
]


def responses(n: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    return [(rng.choice(SHAPES)[:300], rng.choice(["stop", "stop", "length"])) for _ in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--ppl-n", type=int, default=64, help="responses for the perplexity timing (0 to skip)")
    ap.add_argument("--ppl-batch", type=int, default=dg.PPL_BATCH)
    args = ap.parse_args()

    rows = responses(args.n)
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        flags = [dg.signals(r, f) for r, f in rows]
        times.append(time.perf_counter() - start)
    best, med = min(times), statistics.median(times)
    print(
        f"signals: {args.n} responses x{args.repeats}: {1000 * med / args.n * 1000:.1f} ms / 1,000 (median), "
        f"{1000 * best / args.n * 1000:.1f} ms best; {args.n / med:,.0f} responses/s"
    )
    print(f"  degenerate share {sum(f['degenerate'] for f in flags) / len(flags):.2f}")
    if args.ppl_n <= 0:
        return
    try:
        from safeeval.models import resolve_model

        model, name = resolve_model("smollm2").path, "SmolLM2-135M-Instruct"
    except Exception as exc:  # noqa: BLE001
        from tiny_model import build_tiny_model

        print(f"  smollm2 unavailable ({exc}); using the tiny test model")
        model, name = build_tiny_model(Path(tempfile.mkdtemp()) / "tiny"), "tiny test model"
    texts = [r for r, _ in rows[: args.ppl_n]]
    dg.perplexity(texts[: args.ppl_batch], model, batch_size=args.ppl_batch)  # load + warm-up
    start = time.perf_counter()
    got = dg.perplexity(texts, model, batch_size=args.ppl_batch)
    took = time.perf_counter() - start
    print(
        f"perplexity ({name}, {got.get('status')}, batch {args.ppl_batch}, incl. model load): "
        f"{took / len(texts) * 1000 * 1000:.0f} ms / 1,000 ({len(texts) / took:.1f} responses/s)"
    )
    by_shape: dict[str, list[float]] = {}
    for t, v in zip(texts, got.get("values", [])):
        by_shape.setdefault(t[:24], []).append(v)
    for k, vs in sorted(by_shape.items()):
        print(f"  ppl {statistics.median(vs):9.1f}  {k!r}")


if __name__ == "__main__":
    main()
