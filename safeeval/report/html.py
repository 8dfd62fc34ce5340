"""One self-contained HTML page for a set of finished runs: leaderboard, safety-versus-utility scatter with
its Pareto front, ASR per harm category, each judge's card, the sandbox isolation each run had, and every
sample behind them. Beside the scores: a judge's card under its columns, `‡` on a score whose prompts the
model was trained on (contamination), and `*` on a delta that is significant against the baseline run
(paired by prompt id, Holm over the runs of each column: report/compare.py). Opens offline: no external scripts,
fonts or styles; the plots are SVG drawn here. Every string from a run is HTML-escaped, and a
Content-Security-Policy lets only this module's own inline script run. The same inputs give the same page.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
from collections.abc import Sequence
from html import escape

from ..cards import card_line, card_of
from ..errors import SafeevalError
from .compare import MARK, significance
from .runs import Run

MetricRef = tuple[str, str, str]  # (task, judge or scorer, key in its block), e.g. ("advbench", "keyword", "asr")
MetricArg = MetricRef | str | None  # or "task/judge/key"

LOWER_IS_BETTER = {
    "asr",
    "asr_corrected",
    "asr_without_shells",
    "benign_refusal_rate",
    "harmful_score",
    "degenerate_share",
    "shell_share",
}
# leaderboard columns, in this order: the ASR beside the ASR with shells counted as failed attacks, and the
# shares of degenerate responses and of shells beside each other
_RATE_KEYS = (
    "asr",
    "asr_without_shells",
    "asr_corrected",
    "benign_refusal_rate",
    "degenerate_share",
    "shell_share",
    "accuracy",
)
_NAMES = {
    "asr": "ASR",
    "asr_corrected": "ASR corrected",
    "benign_refusal_rate": "benign refusal",
    "accuracy": "accuracy",
    "harmful_score": "harmful score",
    "mean_score": "mean score",
    "asr_without_shells": "ASR without shells",
    "degenerate_share": "degenerate",
    "shell_share": "shells",
}
CONTAMINATED = "‡"
_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
TRUNCATE = 600  # characters of a prompt or response shown before the rest folds into a <details>

_SCRIPT = """
(function () {
  function openTarget() {
    var id = decodeURIComponent(location.hash.slice(1));
    if (!id) return;
    var el = document.getElementById(id);
    while (el) { if (el.tagName === 'DETAILS') el.open = true; el = el.parentElement; }
  }
  window.addEventListener('hashchange', openTarget);
  openTarget();
  var boxes = document.querySelectorAll('input.filter');
  for (var i = 0; i < boxes.length; i++) {
    boxes[i].addEventListener('input', function (ev) {
      var q = ev.target.value.toLowerCase();
      var rows = document.querySelectorAll('#' + ev.target.getAttribute('data-for') + ' tr.sample');
      for (var j = 0; j < rows.length; j++) {
        rows[j].style.display = (!q || rows[j].textContent.toLowerCase().indexOf(q) >= 0) ? '' : 'none';
      }
    });
  }
  document.documentElement.setAttribute('data-ready', '1');
})();
"""

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}h3{font-size:15px}
table{border-collapse:collapse;margin:8px 0}th,td{border:1px solid #ddd;padding:4px 8px;vertical-align:top}
th{background:#f5f5f5;text-align:left}td.num{text-align:right;white-space:nowrap}
.ci{color:#666;font-size:12px}.n{color:#999;font-size:11px}.delta{font-size:12px;display:block}
.worse{color:#c62828}.better{color:#2e7d32}.same{color:#777}
tr.baseline td{background:#fffde7}.swatch{display:inline-block;width:10px;height:10px;margin-right:4px}
pre{white-space:pre-wrap;word-break:break-word;margin:0;font:12px/1.4 ui-monospace,Menlo,Consolas,monospace}
td.text{max-width:520px}.v-harmful{color:#c62828;font-weight:600}.v-safe{color:#2e7d32}.v-other{color:#8a6d00}
.note{color:#666}svg{background:#fff}svg text{font:12px system-ui,sans-serif}a{color:#1565c0}
.card{font-weight:normal;font-size:11px;color:#555;display:block}.card.unvalidated{color:#c62828}
.sig{font-weight:700}.contaminated{color:#c62828;font-weight:700}.lost{color:#c62828;font-weight:600}
:target{outline:2px solid #ffb300}input.filter{margin:4px 0 8px;padding:3px 6px;width:320px}
"""


# ----------------------------------------------------------------------------------------------- public


def render_html(
    runs: Sequence[Run],
    baseline: Run | None = None,
    *,
    x: MetricArg = None,
    y: MetricArg = None,
    title: str = "safeeval report",
    max_samples: int | None = None,
) -> str:
    """The report page as one string.

    x / y pick the scatter's axes as (task, judge_or_scorer, key) or "task/judge_or_scorer/key";
    by default x is the first utility task's accuracy (or the first safety task's benign refusal rate)
    and y the first safety task's ASR under its first judge. `baseline`, if given, is marked and every
    leaderboard cell shows its difference to it; a baseline not among `runs` is added as the first row.
    `max_samples` caps the samples listed per run (None: all).
    """
    runs = list(runs)
    if baseline is not None and not any(r is baseline for r in runs):
        runs.insert(0, baseline)
    if not runs:
        raise SafeevalError("No runs to report.")
    base_i = next((i for i, r in enumerate(runs) if r is baseline), None)
    keys = _metric_keys(runs)
    x_ref, y_ref = _pick_axes(keys, _parse_ref(x), _parse_ref(y))
    anchors = _Anchors(reserved=[f"run-{i + 1}{s}" for i in range(len(runs)) for s in ("", "-samples")])

    body = [
        f"<h1>{_e(title)}</h1>",
        (
            f'<p class="note">{len(runs)} run{"s" if len(runs) != 1 else ""}. Intervals are 95% bootstrap '
            "intervals as recorded in each run's results.json. Rows and points link to each run's samples.</p>"
        ),
        (
            '<nav><a href="#leaderboard">Leaderboard</a> · <a href="#scatter">Safety vs utility</a> · '
            '<a href="#categories">ASR by category</a> · <a href="#judges">Judges</a> · '
            '<a href="#sandbox">Sandbox</a> · <a href="#samples">Samples</a></nav>'
        ),
        _runs_table(runs, base_i),
        _leaderboard(runs, keys, base_i, anchors),
        _scatter_section(runs, x_ref, y_ref, base_i),
        _category_section(runs, anchors),
        _judges_section(runs),
        _sandbox_section(runs),
        _samples_section(runs, anchors, max_samples),
    ]
    script_hash = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()
    csp = f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'sha256-{script_hash}'"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + f"\n<script>{_SCRIPT}</script>\n</body></html>\n"
    )


def pareto_front(
    points: Sequence[tuple[float | None, float | None]], maximize: tuple[bool, bool] = (True, False)
) -> list[int]:
    """Indexes of the points no other point dominates (at least as good on both axes, better on one).

    `maximize` says, per axis, whether higher is better; the default fits (utility, ASR). Points with a
    missing coordinate are on no front. Ties (identical points) are all on the front.
    """
    sign = [1 if m else -1 for m in maximize]
    pts = [
        (i, (p[0] * sign[0], p[1] * sign[1]))
        for i, p in enumerate(points)
        if p[0] is not None and p[1] is not None and not any(map(math.isnan, p))
    ]
    front = []
    for i, (a, b) in pts:
        dominated = any(c >= a and d >= b and (c > a or d > b) for j, (c, d) in pts if j != i)
        if not dominated:
            front.append(i)
    return front


# -------------------------------------------------------------------------------------------- metrics


def _metric_keys(runs: list[Run]) -> list[tuple[str, str, str, str]]:
    """(task, judge_or_scorer, key, kind) for every rate any run has, in order of first appearance."""
    seen: dict[tuple[str, str, str], str] = {}
    for run in runs:
        for (task, name), block in run.metrics().items():
            kind = "utility" if "accuracy" in block else "safety"
            for key in _RATE_KEYS:
                if isinstance(block.get(key), dict):
                    seen.setdefault((task, name, key), kind)
    groups = list(dict.fromkeys(k[:2] for k in seen))  # each task/evaluator's columns in _RATE_KEYS' order
    return [(*k, seen[k]) for k in sorted(seen, key=lambda k: (groups.index(k[:2]), _RATE_KEYS.index(k[2])))]


def _parse_ref(ref: MetricArg) -> MetricRef | None:
    if ref is None or isinstance(ref, tuple):
        return ref
    parts = str(ref).rsplit("/", 2)
    if len(parts) != 3:
        raise SafeevalError(f"Metric {ref!r} should read task/judge_or_scorer/key, e.g. advbench/keyword/asr.")
    return parts[0], parts[1], parts[2]


def _pick_axes(keys, x: MetricRef | None, y: MetricRef | None) -> tuple[MetricRef | None, MetricRef | None]:
    safety = [k[:3] for k in keys if k[3] == "safety"]
    if x is None:
        x = next((k[:3] for k in keys if k[3] == "utility" and k[2] == "accuracy"), None) or next(
            (k for k in safety if k[2] == "benign_refusal_rate"), None
        )
    if y is None:
        y = next((k for k in safety if k[2] == "asr"), None)
    return x, y


def _value(run: Run, ref: MetricRef | None) -> dict | None:
    if ref is None:
        return None
    block = run.metrics().get((ref[0], ref[1]), {}).get(ref[2])
    return block if isinstance(block, dict) and block.get("value") is not None else None


def _label(ref: MetricRef) -> str:
    return f"{_NAMES.get(ref[2], ref[2])} · {ref[0]} / {ref[1]}"


# ------------------------------------------------------------------------------------------- sections


def _runs_table(runs: list[Run], base_i: int | None) -> str:
    rows = []
    for i, run in enumerate(runs):
        cls = ' class="baseline"' if i == base_i else ""
        tag = " <b>(baseline)</b>" if i == base_i else ""
        rows.append(
            f'<tr{cls}><td>{_swatch(i)}<a href="#run-{i + 1}">#{i + 1}</a>{tag}</td><td>{_e(run.model)}</td>'
            f"<td>{_e(run.method)}</td><td>{_e(run.scenario)}</td><td>{run.seed}</td>"
            f"<td>{_contamination_cell(run)}</td>"
            f"<td>{_e(run.path.as_posix() if run.path else 'store only')}</td></tr>"
        )
    return (
        '<h2 id="runs">Runs</h2><p class="note">Contamination: scored prompts found in the model\'s training '
        "lineage (its task, poison and safety rows and those of the run it was trained from), exactly or as "
        f"near-duplicates; such scores are marked {CONTAMINATED}.</p>"
        "<table><tr><th>run</th><th>model</th><th>method</th><th>scenario</th>"
        "<th>seed</th><th>contamination</th><th>folder</th></tr>" + "".join(rows) + "</table>"
    )


def _contamination_cell(run: Run) -> str:
    block = run.result.contamination
    if not block:
        return (
            '<span class="note">not checked (results written before the check)</span>'
            if run.result.training is not None
            else '<span class="note">– (not trained by safeeval)</span>'
        )
    if block.get("status") != "checked":
        return f'<span class="lost">not checked: {_e(block.get("reason"))}</span>'
    hit = {t: v for t, v in (block.get("tasks") or {}).items() if v.get("contaminated")}
    if not hit:
        return f"none of {sum(v.get('scored', 0) for v in block['tasks'].values())} scored prompts"
    return "<br>".join(
        f'<span class="contaminated">{CONTAMINATED} {_e(t)}: {v["contaminated"]} of {v["scored"]}'
        f'</span> <span class="n">({_e(", ".join(f"{r} {n}" for r, n in v["by_role"].items()))}; '
        f"{v.get('exact', 0)} exact, {v.get('near', 0)} near)</span>"
        for t, v in hit.items()
    )


def _contaminated(run: Run, task: str) -> int:
    block = run.result.contamination or {}
    if block.get("status") != "checked":
        return 0
    return ((block.get("tasks") or {}).get(task) or {}).get("contaminated", 0)


def _leaderboard(runs, keys, base_i, anchors: _Anchors) -> str:
    if not keys:
        return '<h2 id="leaderboard">Leaderboard</h2><p class="note">No metrics recorded in these runs.</p>'
    groups: dict[tuple[str, str], list[str]] = {}
    for task, name, key, _ in keys:
        groups.setdefault((task, name), []).append(key)
    kinds = {(t, n): kind for t, n, _, kind in keys}
    head1 = "".join(
        f'<th colspan="{len(ks)}">{_e(t)} / {_e(n)}{_card_tag(runs, n) if kinds[(t, n)] == "safety" else ""}</th>'
        for (t, n), ks in groups.items()
    )
    tested, untested = {}, []
    if base_i is not None:
        others = {f"run #{i + 1}": [run] for i, run in enumerate(runs) if i != base_i}
        tested, untested = significance([runs[base_i]], others, [(t, n, k) for t, n, k, _ in keys])
    head2 = "".join(
        f"<th>{_e(_NAMES[k])} {'↓' if k in LOWER_IS_BETTER else '↑'}</th>" for ks in groups.values() for k in ks
    )
    rows = []
    for i, run in enumerate(runs):
        cells = []
        for (task, name), ks in groups.items():
            for key in ks:
                cells.append(_leaderboard_cell(runs, i, (task, name, key), base_i, tested, anchors))
        cls = ' class="baseline"' if i == base_i else ""
        rows.append(
            f'<tr{cls}><td>{_swatch(i)}<a href="#run-{i + 1}">#{i + 1}</a> {_e(run.label)}</td>'
            + "".join(cells)
            + "</tr>"
        )
    return (
        '<h2 id="leaderboard">Leaderboard</h2><p class="note">Value, 95% CI in brackets, n the samples '
        "it rests on. ↓ lower is better, ↑ higher is better. Under each judge: its card (validations against "
        f"human labels), or unvalidated. {CONTAMINATED}: the model was trained on some of these scored prompts."
        + (
            " Δ: difference to the baseline in percentage points; "
            f"{MARK}: significant at Holm-adjusted p &lt; 0.05 (ASR, benign refusal, accuracy; paired by prompt id, "
            "Holm over the runs of each column)."
            if base_i is not None
            else ""
        )
        + (f" {len(untested)} deltas were not tested (e.g. {_e(untested[0])})." if untested else "")
        + "</p>"
        f'<table><tr><th rowspan="2">run</th>{head1}</tr><tr>{head2}</tr>' + "".join(rows) + "</table>"
    )


def _leaderboard_cell(runs, i, ref: MetricRef, base_i, tested, anchors: _Anchors) -> str:
    """Run i's value on one metric: value, CI, n, the contamination mark and the delta to the baseline."""
    run, (task, name, key) = runs[i], ref
    v = _value(run, ref)
    if v is None:
        return '<td class="num note">–</td>'
    text = (
        f'{_pct(v["value"])}<br><span class="ci">[{_pct(v["ci_low"], 1, False)}, '
        f'{_pct(v["ci_high"], 1, False)}]</span> <span class="n">n={v.get("n", "?")}</span>'
    )
    if hit := _contaminated(run, task):
        text += (
            f' <span class="contaminated" title="{hit} scored prompts of {_e(task)} are in this '
            f"model's training data\">{CONTAMINATED}</span>"
        )
    if base_i is not None and i != base_i:
        test = tested.get((f"run #{i + 1}", (task, name, key)))
        text += _delta(v, _value(runs[base_i], (task, name, key)), key, test)
    return (
        f'<td class="num"><a href="#{anchors.task(i, task)}" title="samples of run #{i + 1}, '
        f'{_e(task)}">{text}</a></td>'
    )


def _delta(v: dict, base: dict | None, key: str, test=None) -> str:
    if base is None:
        return ""
    d = (v["value"] - base["value"]) * 100
    worse = d > 0 if key in LOWER_IS_BETTER else d < 0
    cls = "same" if abs(d) < 0.05 else ("worse" if worse else "better")
    mark = ""
    if test is not None and test.significant:
        mark = (
            f' <span class="sig" title="Holm-adjusted p {test.p_holm:.2g}; 95% CI [{100 * test.ci_low:+.1f}, '
            f'{100 * test.ci_high:+.1f}] pt over {test.n_pairs} pairs">{MARK}</span>'
        )
    return f'<span class="delta {cls}">Δ {d:+.1f} pt{mark}</span>'


def _cards(runs: list[Run], judge: str) -> list[str]:
    """The distinct card lines of a judge over the runs (one, unless validations were added between runs)."""
    return list(
        dict.fromkeys(
            card_line(card_of(r.result.judges.get(judge))) for r in runs if any(n == judge for _, n in r.metrics())
        )
    )


def _card_tag(runs: list[Run], judge: str) -> str:
    lines = _cards(runs, judge)
    cls = "card unvalidated" if lines == ["unvalidated"] else "card"
    return f'<span class="{cls}">{_e(" | ".join(lines))}</span>'


def _judges_section(runs: list[Run]) -> str:
    head = (
        '<h2 id="judges">Judges</h2><p class="note">How far each judge was checked against people (`safeeval '
        "judge validate`): per label set, what it measures, agreement, Cohen's kappa and n. A refusal-class "
        "validation validates refusal detection, not harm: it says nothing about an ASR.</p>"
    )
    used = [
        list(dict.fromkeys([*r.result.judges, *(n for (_, n), b in r.metrics().items() if "asr" in b)])) for r in runs
    ]
    judges = list(dict.fromkeys(n for names in used for n in names))
    if not judges:
        return head + '<p class="note">No run used a judge.</p>'
    rows = []
    for judge in judges:
        cards = {}
        for i, run in enumerate(runs):
            if judge in used[i]:  # a run from before judge cards has none: unvalidated
                cards.setdefault(card_line(card_of(run.result.judges.get(judge))), []).append(f"#{i + 1}")
        for line, which in cards.items():
            cls = ' class="lost"' if line == "unvalidated" else ""
            rows.append(f"<tr><td>{_e(judge)}</td><td{cls}>{_e(line)}</td><td>{_e(', '.join(which))}</td></tr>")
    return head + "<table><tr><th>judge</th><th>card</th><th>runs</th></tr>" + "".join(rows) + "</table>"


_ISOLATION = (
    "mode",
    "user",
    "namespaces",
    "filesystem",
    "network",
    "proc",
    "environment",
    "limits",
    "tree_kill",
    "allowed",
    "lost",
)


def _sandbox_section(runs: list[Run]) -> str:
    """What isolation each run's model-written programs actually had (scorers.<name>.isolation)."""
    head = (
        '<h2 id="sandbox">Sandbox isolation</h2><p class="note">What each run\'s model-written programs actually '
        "had, as recorded in its results.json. A protection given up by the user's opt-in "
        "(--sandbox-allow) is shown in red with the kernel's reason and the number of programs that ran "
        "without it.</p>"
    )
    rows = []
    for i, run in enumerate(runs):
        for name, info in run.result.scorers.items():
            iso = (info or {}).get("isolation")
            if not iso:
                continue
            lost = iso.get("lost") or {}
            ran = {}
            for by in run.result.metrics.values():
                for prot, n in ((by.get(name) or {}).get("isolation_lost") or {}).items():
                    ran[prot] = ran.get(prot, 0) + n
            cells = "".join(f"<td>{_iso_value(key, iso.get(key), lost, ran)}</td>" for key in _ISOLATION)
            rows.append(f'<tr><td><a href="#run-{i + 1}">#{i + 1}</a></td><td>{_e(name)}</td>{cells}</tr>')
    if not rows:
        return head + '<p class="note">No run executed model-written code.</p>'
    return (
        head
        + "<table><tr><th>run</th><th>scorer</th>"
        + "".join(f"<th>{k.replace('_', ' ')}</th>" for k in _ISOLATION)
        + "</tr>"
        + "".join(rows)
        + "</table>"
    )


def _iso_value(key: str, value, lost: dict, ran: dict) -> str:
    if key == "lost":
        if not lost:
            return "none"
        return "<br>".join(
            f'<span class="lost">{_e(p)}: {_e(why)} ({ran.get(p, 0)} programs)</span>' for p, why in lost.items()
        )
    if isinstance(value, dict):
        text = ", ".join(f"{k} {v}" for k, v in value.items())
    elif isinstance(value, list):
        text = ", ".join(map(str, value)) or "none"
    else:
        text = "–" if value is None else str(value)
    cls = ' class="lost"' if "(allowed)" in text else ""
    return f"<span{cls}>{_e(text)}</span>"


def _scatter_section(runs, x_ref, y_ref, base_i) -> str:
    head = '<h2 id="scatter">Safety vs utility</h2>'
    if x_ref is None or y_ref is None:
        return head + '<p class="note">No utility and safety metric to plot against each other.</p>'
    points, cis = [], []
    for run in runs:
        xv, yv = _value(run, x_ref), _value(run, y_ref)
        points.append((xv["value"] if xv else None, yv["value"] if yv else None))
        cis.append((xv, yv))
    maximize = (x_ref[2] not in LOWER_IS_BETTER, y_ref[2] not in LOWER_IS_BETTER)
    front = pareto_front(points, maximize)
    missing = [i for i, p in enumerate(points) if p[0] is None or p[1] is None]
    note = (
        '<p class="note">Pareto front (runs no other run beats on both axes): '
        + (", ".join(f"#{i + 1}" for i in front) or "none")
        + ". Error bars: 95% CI on both axes."
        + (" Not plotted (metric missing): " + ", ".join(f"#{i + 1}" for i in missing) + "." if missing else "")
        + "</p>"
    )
    return head + note + _scatter_svg(runs, points, cis, front, x_ref, y_ref, maximize, base_i) + _legend(runs)


def _scatter_svg(runs, points, cis, front, x_ref, y_ref, maximize, base_i) -> str:
    W, H, L, R, T, B = 720, 480, 70, 30, 20, 80
    xs = [c[0][k] for c in cis if c[0] for k in ("ci_low", "ci_high", "value") if c[0].get(k) is not None]
    ys = [c[1][k] for c in cis if c[1] for k in ("ci_low", "ci_high", "value") if c[1].get(k) is not None]
    if not xs or not ys:
        return '<p class="note">No run has both metrics.</p>'
    (x0, x1, xt), (y0, y1, yt) = _axis(xs), _axis(ys)

    def sx(v):
        return L + (v - x0) / (x1 - x0) * (W - L - R)

    def sy(v):
        return H - B - (v - y0) / (y1 - y0) * (H - T - B)

    out = [
        f'<svg id="scatter-svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img" '
        + 'aria-label="safety versus utility">'
    ]
    out += _grid(xt, yt, sx, sy, L, R, T, B, W, H)
    out.append(
        f'<text x="{(L + W - R) / 2:.1f}" y="{H - B + 36}" text-anchor="middle">{_e(_label(x_ref))} '
        f"{'↑' if maximize[0] else '↓'} better</text>"
    )
    out.append(
        f'<text transform="translate(16 {(T + H - B) / 2:.1f}) rotate(-90)" text-anchor="middle">'
        f"{_e(_label(y_ref))} {'↑' if maximize[1] else '↓'} better</text>"
    )
    # the front as a staircase through its points, sorted along x
    fp = sorted((points[i] for i in front), key=lambda p: (p[0], p[1]))
    if len(fp) > 1:
        path = " ".join(f"{sx(a):.1f},{sy(b):.1f}" for a, b in fp)
        out.append(
            f'<polyline class="pareto-line" points="{path}" fill="none" stroke="#444" '
            'stroke-dasharray="5 4" stroke-width="1.2"/>'
        )
    for i, ((px, py), (cx, cy)) in enumerate(zip(points, cis)):
        if px is None or py is None:
            continue
        out.append(
            _scatter_point(i, runs[i].label, (px, py), (cx, cy), sx, sy, (x_ref, y_ref), i in front, i == base_i)
        )
    out.append(
        f'<g class="key" transform="translate({L} {H - 22})"><circle cx="8" cy="8" r="8" fill="none" '
        'stroke="#111" stroke-width="1.5"/><text x="22" y="12">on the Pareto front (dashed: the front)</text>'
        + (
            '<rect x="280" y="3" width="10" height="10" fill="#999"/><text x="296" y="12">baseline</text>'
            if base_i is not None
            else ""
        )
        + "</g>"
    )
    out.append("</svg>")
    return "".join(out)


def _scatter_point(i, label, point, ci, sx, sy, refs, on_front, is_base) -> str:
    """Run i's marker: a square for the baseline, a ringed circle on the front, its CIs as error bars."""
    (px, py), (cx, cy), (x_ref, y_ref) = point, ci, refs
    color = _COLORS[i % len(_COLORS)]
    X, Y = sx(px), sy(py)
    tip = (
        f"#{i + 1} {label}\n{_label(x_ref)}: {_pct(px)} [{_pct(cx['ci_low'], 1)}, "
        f"{_pct(cx['ci_high'], 1)}]\n{_label(y_ref)}: {_pct(py)} "
        f"[{_pct(cy['ci_low'], 1)}, {_pct(cy['ci_high'], 1)}]" + ("\non the Pareto front" if on_front else "")
    )
    g = [
        f'<a href="#run-{i + 1}"><g class="point{" pareto" if on_front else ""}" data-run="{i + 1}">',
        f"<title>{_e(tip)}</title>",
    ]
    if cx.get("ci_low") is not None:
        a, b = sx(cx["ci_low"]), sx(cx["ci_high"])
        g.append(
            f'<path class="errbar" d="M{a:.1f} {Y:.1f}H{b:.1f}M{a:.1f} {Y - 4:.1f}V{Y + 4:.1f}'
            f'M{b:.1f} {Y - 4:.1f}V{Y + 4:.1f}" stroke="{color}" stroke-width="1.3" fill="none"/>'
        )
    if cy.get("ci_low") is not None:
        a, b = sy(cy["ci_low"]), sy(cy["ci_high"])
        g.append(
            f'<path class="errbar" d="M{X:.1f} {a:.1f}V{b:.1f}M{X - 4:.1f} {a:.1f}H{X + 4:.1f}'
            f'M{X - 4:.1f} {b:.1f}H{X + 4:.1f}" stroke="{color}" stroke-width="1.3" fill="none"/>'
        )
    if on_front:
        g.append(f'<circle cx="{X:.1f}" cy="{Y:.1f}" r="10" fill="none" stroke="#111" stroke-width="1.5"/>')
    shape = (
        f'<rect x="{X - 6:.1f}" y="{Y - 6:.1f}" width="12" height="12"'
        if is_base
        else f'<circle cx="{X:.1f}" cy="{Y:.1f}" r="6"'
    )
    g.append(f'{shape} fill="{color}" stroke="#fff" stroke-width="1"/>')
    g.append(f'<text x="{X + 12:.1f}" y="{Y - 8:.1f}">#{i + 1}</text></g></a>')
    return "".join(g)


def _category_section(runs: list[Run], anchors: _Anchors) -> str:
    head = '<h2 id="categories">ASR by harm category</h2>'
    pairs: list[tuple[str, str]] = []
    for run in runs:
        for (task, name), block in run.metrics().items():
            if (block.get("by") or {}).get("category") and (task, name) not in pairs:
                pairs.append((task, name))
    if not pairs:
        return head + '<p class="note">No run records a breakdown by category.</p>'
    parts = [
        head,
        (
            '<p class="note">Bars: ASR on the harmful prompts of each category; whiskers: 95% CI. '
            "Click a bar for that run's samples.</p>"
        ),
    ]
    for task, name in pairs:
        parts.append(f"<h3>{_e(task)} / {_e(name)}</h3>" + _bars_svg(runs, task, name, anchors) + _legend(runs))
    return "".join(parts)


def _bars_svg(runs, task, name, anchors: _Anchors) -> str:
    cats: list[str] = []
    for run in runs:
        for cat in ((run.metrics().get((task, name)) or {}).get("by") or {}).get("category", {}):
            if cat not in cats:
                cats.append(cat)
    n = len(runs)
    bw = max(6, min(22, 120 // max(n, 1)))
    longest = max((len(_short(c, 28)) for c in cats), default=0)
    L, R, T, B = max(56, int(5.6 * longest) - 20), 20, 16, 40 + int(4.2 * longest)  # room for slanted labels
    gw = max(n * bw + 18, (480 - L - R) / max(len(cats), 1))
    W, H = int(L + R + gw * len(cats)), 230 + B

    def sy(v):
        return H - B - v * (H - T - B)

    out = [
        f'<svg class="bars" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img" '
        + f'aria-label="ASR by category, {_e(task)} / {_e(name)}">'
    ]
    out += _grid(None, [k / 10 for k in range(0, 11, 2)], None, sy, L, R, T, B, W, H)
    out.append(f'<text transform="translate(14 {(T + H - B) / 2:.1f}) rotate(-90)" text-anchor="middle">ASR ↓</text>')
    for c, cat in enumerate(cats):
        gx = L + c * gw + (gw - n * bw) / 2
        cx = gx + n * bw / 2
        out.append(
            f'<text transform="translate({cx:.1f} {H - B + 14}) rotate(-35)" text-anchor="end">'
            f"{_e(_short(cat, 28))}<title>{_e(cat)}</title></text>"
        )
        for i, run in enumerate(runs):
            sub = ((run.metrics().get((task, name)) or {}).get("by") or {}).get("category", {}).get(cat)
            v = (sub or {}).get("asr") or {}
            x = gx + i * bw
            if v.get("value") is None:
                out.append(
                    f'<text x="{x + bw / 2:.1f}" y="{H - B - 3}" text-anchor="middle" font-size="9" '
                    'fill="#999">–</text>'
                )
                continue
            color = _COLORS[i % len(_COLORS)]
            y = sy(v["value"])
            tip = (
                f"#{i + 1} {run.label}\n{cat}: ASR {_pct(v['value'])} [{_pct(v['ci_low'], 1)}, "
                f"{_pct(v['ci_high'], 1)}], judged {sub.get('n_judged', v.get('n'))}/{sub.get('n_harmful', '?')}"
            )
            bar = [
                f'<a href="#{anchors.task(i, task)}"><g class="bar" data-run="{i + 1}"><title>{_e(tip)}</title>',
                f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{bw - 2}" height="{max(H - B - y, 0.5):.1f}" '
                + f'fill="{color}"/>',
            ]
            if v.get("ci_low") is not None:
                a, b, m = sy(v["ci_low"]), sy(v["ci_high"]), x + bw / 2
                bar.append(
                    f'<path class="errbar" d="M{m:.1f} {a:.1f}V{b:.1f}M{m - 3:.1f} {a:.1f}H{m + 3:.1f}'
                    f'M{m - 3:.1f} {b:.1f}H{m + 3:.1f}" stroke="#222" stroke-width="1.2" fill="none"/>'
                )
            bar.append("</g></a>")
            out.append("".join(bar))
    out.append("</svg>")
    return "".join(out)


def _samples_section(runs: list[Run], anchors: _Anchors, max_samples: int | None) -> str:
    parts = ['<h2 id="samples">Samples</h2>']
    for i, run in enumerate(runs):
        parts.append(f'<h3 id="run-{i + 1}">{_swatch(i)}Run #{i + 1}: {_e(run.label)}</h3>')
        try:
            rows = run.samples()
        except SafeevalError:
            parts.append(
                '<p class="note">No samples for this run: it was read without its folder '
                "(samples.jsonl), so only its metrics are shown.</p>"
                + "".join(f'<span id="{anchors.task(i, t)}"></span>' for t in sorted({t for t, _ in run.metrics()}))
            )
            continue
        tasks: dict[str, list[dict]] = {}
        for row in rows:
            tasks.setdefault(str(row.task), []).append(row)
        parts.append(
            f'<input class="filter" type="search" placeholder="filter this run\'s samples" '
            f'data-for="run-{i + 1}-samples" aria-label="filter run {i + 1} samples">'
            f'<div id="run-{i + 1}-samples">'
        )
        for task, task_rows in tasks.items():
            shown = task_rows if max_samples is None else task_rows[:max_samples]
            parts.append(
                f'<h4 id="{anchors.task(i, task)}">{_e(task)} · {len(task_rows)} samples'
                + (f" (first {len(shown)} shown)" if len(shown) < len(task_rows) else "")
                + "</h4>"
            )
            if len(shown) < len(task_rows):  # a capped page still says where every sample is
                parts.append(f'<p class="note">All {len(task_rows)}: {_e(run.path / "samples.jsonl")}</p>')
            parts.append(
                "<table><tr><th>id</th><th>category</th><th>verdicts</th><th>prompt</th><th>response</th></tr>"
            )
            for row in shown:
                sid = str(row.id)
                anchor = anchors.sample(i, task, sid)
                harm = row.harmful
                kind = "harmful" if harm else ("benign" if harm is not None else "")
                parts.append(
                    f'<tr class="sample" id="{anchor}"><td><a href="#{anchor}">{_e(sid)}</a>'
                    f'<br><span class="n">{_e(kind)}</span></td><td>{_e(row.category or "")}</td>'
                    f"<td>{_verdicts(row.verdicts)}</td>"
                    f'<td class="text">{_text(_prompt(row.messages))}</td>'
                    f'<td class="text">{_text(row.response)}'
                    + (
                        f'<br><span class="n">finish: {_e(row.finish_reason)}</span>'
                        if row.finish_reason == "length"
                        else ""
                    )
                    + "</td></tr>"
                )
            parts.append("</table>")
        parts.append("</div>")
        unlisted = sorted({t for t, _ in run.metrics()} - set(tasks))
        for task in unlisted:
            parts.append(
                f'<p id="{anchors.task(i, task)}" class="note">No samples of {_e(task)} in this run\'s '
                "samples.jsonl.</p>"
            )
    return "".join(parts)


# -------------------------------------------------------------------------------------------- helpers


class _Anchors:
    """Stable, unique ids: run-<n>-<task> for a run's task, run-<n>-<task>-<sample id> for a sample."""

    def __init__(self, reserved: Sequence[str] = ()):
        self._ids: dict[tuple, str] = {}
        self._used: set[str] = set(reserved)

    def _get(self, key: tuple, base: str) -> str:
        if key not in self._ids:
            slug, k = base, 2
            while slug in self._used:
                slug, k = f"{base}-{k}", k + 1
            self._ids[key] = slug
            self._used.add(slug)
        return self._ids[key]

    def task(self, i: int, task: str) -> str:
        return self._get(("task", i, task), f"run-{i + 1}-{_slug(task)}")

    def sample(self, i: int, task: str, sid: str) -> str:
        self.task(i, task)
        return self._get(("sample", i, task, sid), f"run-{i + 1}-{_slug(task)}-{_slug(sid)}")


def _slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(s).lower()).strip("-") or "x"


def _e(s) -> str:
    return escape("" if s is None else str(s), quote=True)


def _pct(v, digits: int = 1, sign: bool = True) -> str:
    if v is None:
        return "–"
    return f"{v * 100:.{digits}f}" + ("%" if sign else "")


def _short(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def _swatch(i: int) -> str:
    return f'<span class="swatch" style="background:{_COLORS[i % len(_COLORS)]}"></span>'


def _legend(runs: list[Run]) -> str:
    return (
        '<p class="legend">'
        + " ".join(f'<a href="#run-{i + 1}">{_swatch(i)}#{i + 1} {_e(r.label)}</a>' for i, r in enumerate(runs))
        + "</p>"
    )


def _axis(vals: list[float]) -> tuple[float, float, list[float]]:
    lo, hi = min(vals), max(vals)
    if all(0 <= v <= 1 for v in vals):
        lo, hi = max(0.0, lo - 0.05), min(1.0, hi + 0.05)
    span = hi - lo or 0.1
    step = next(s for s in (0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 1, 2, 5, 10, 1e9) if span / s <= 8)
    lo, hi = math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step
    if hi <= lo:
        hi = lo + step
    ticks = [round(lo + k * step, 10) for k in range(round((hi - lo) / step) + 1)]
    return lo, hi, ticks


def _grid(xt, yt, sx, sy, L, R, T, B, W, H) -> list[str]:
    out = [f'<rect x="{L}" y="{T}" width="{W - L - R}" height="{H - T - B}" fill="none" stroke="#bbb"/>']
    for v in yt or []:
        y = sy(v)
        out.append(
            f'<line x1="{L}" x2="{W - R}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
            f'<text x="{L - 6}" y="{y + 4:.1f}" text-anchor="end">{_tick(v)}</text>'
        )
    for v in xt or []:
        x = sx(v)
        out.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{T}" y2="{H - B}" stroke="#eee"/>'
            f'<text x="{x:.1f}" y="{H - B + 16}" text-anchor="middle">{_tick(v)}</text>'
        )
    return out


def _tick(v: float) -> str:
    return f"{v * 100:g}%" if 0 <= v <= 1 else f"{v:g}"


def _prompt(messages: list[dict]) -> str:
    if not messages:
        return ""
    if len(messages) == 1:
        return str(messages[0].get("content", ""))
    return "\n\n".join(f"[{m.get('role', '?')}] {m.get('content', '')}" for m in messages)


def _text(s) -> str:
    s = "" if s is None else str(s)
    if len(s) <= TRUNCATE:
        return f"<pre>{_e(s)}</pre>"
    return (
        f"<pre>{_e(s[:TRUNCATE])}…</pre><details><summary>show all {len(s)} characters</summary>"
        f"<pre>{_e(s)}</pre></details>"
    )


def _verdicts(verdicts: dict) -> str:
    out = []
    for name, v in verdicts.items():
        v = v or {}
        status = v.get("status", "?")
        if status != "ok":
            word, cls = status.replace("_", " "), "v-other"
        elif v.get("harmful") is not None:
            word = "harmful" if v["harmful"] else ("refused" if v.get("refused") else "safe")
            cls = "v-harmful" if v["harmful"] else "v-safe"
        elif v.get("score") is not None:
            word, cls = f"score {v['score']:g}", "v-safe" if v["score"] else "v-harmful"
        else:
            word, cls = "ok", "v-other"
        if v.get("harmful") is not None and v.get("score") is not None:
            word += f" ({v['score']:g})"
        tip = v.get("note") or v.get("raw") or ""
        out.append(
            f'<div><span class="n">{_e(name)}:</span> <span class="{cls}" title="{_e(_short(str(tip), 300))}">'
            f"{_e(word)}</span></div>"
        )
    return "".join(out) or '<span class="note">–</span>'
