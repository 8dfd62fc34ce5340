"""Train/test contamination: which scored prompts a model was trained on, exactly or nearly. Pure functions.

Texts are compared after normalisation (Unicode NFKC, case folded, every run of non-word characters one
space) and after removing, from each group of texts (a scored task, a training set), the words that open or
close every text of the group: a prompt template shared by a task's prompts, or by a training set's rows, says
nothing about the request, and would otherwise make two SST-2 prompts alike for their template alone.

- exact: equal after that;
- near: character NGRAM-gram Jaccard similarity of at least THRESHOLD.

The method and threshold were chosen on tests/data/near_duplicates.yaml: 70 labelled pairs written for
safeeval (format changes, edits, wrappers, reordered clauses, changed numbers and paraphrases as duplicates;
same topic, same sentence frame, contained short requests and shared templates as non-duplicates). Among
character 3-7-gram and word 1-3-gram Jaccard and containment, character 3-gram Jaccard at 0.65 has the best F1
(0.81: precision 0.85, recall 0.78; tests/test_contamination.py recomputes it). Jaccard was preferred over TF-IDF
cosine (F1 0.84 at its best on the same pairs, one pair apart) because its value does not depend on the corpus:
0.65 means the same on any data. Known limits: paraphrases reworded throughout are mostly missed (no embedding
model is at hand offline), and requests in one sentence frame with a different object ("a tutorial on making a
bomb" / "... a cake") can exceed the threshold.

Speed: every pair's intersection comes from one sparse product of n-gram incidence matrices, in chunks: 4.7 s
for 2,817 scored prompts against 9,983 training texts on a busy 2-core CPU, normalisation included
(benchmarks/bench_contamination.py).
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from dataclasses import asdict, dataclass, field

import numpy as np

NGRAM = 3
THRESHOLD = 0.65
METHOD = f"character {NGRAM}-gram Jaccard >= {THRESHOLD} after normalisation and template stripping"

# A group (a scored task, a training set) needs this many distinct texts before the words they all share at
# their start and end are taken for a template and removed.
TEMPLATE_MIN_GROUP = 10
_WORD = re.compile(r"\w+")


def normalise(text: str) -> str:
    """NFKC, case folded, word characters only, single spaces."""
    return " ".join(_WORD.findall(unicodedata.normalize("NFKC", text or "").casefold()))


def shingles(norm: str, n: int = NGRAM) -> set[str]:
    """The character n-grams of a normalised text (the whole text when shorter than n)."""
    if len(norm) <= n:
        return {norm} if norm else set()
    return {norm[i : i + n] for i in range(len(norm) - n + 1)}


def similarity(a: str, b: str, n: int = NGRAM) -> float:
    """Character n-gram Jaccard similarity of two raw texts (normalised here; no template stripping)."""
    sa, sb = shingles(normalise(a), n), shingles(normalise(b), n)
    return len(sa & sb) / len(sa | sb) if sa or sb else 1.0


def strip_shared(norms: list[str]) -> list[str]:
    """Normalised texts without the words that open, and those that close, every one of them: a group's
    template. Only groups of at least TEMPLATE_MIN_GROUP distinct texts are stripped (in a few texts, shared
    words may be chance, as two poison rows that both begin "write a script"), and every text keeps a word."""
    if len(set(norms)) < TEMPLATE_MIN_GROUP:
        return list(norms)
    words = [t.split() for t in norms]
    shortest = min(len(w) for w in words)
    head = 0
    while head < shortest - 1 and len({w[head] for w in words}) == 1:
        head += 1
    tail = 0
    while head + tail < shortest - 1 and len({w[-1 - tail] for w in words}) == 1:
        tail += 1
    return [" ".join(w[head : len(w) - tail]) for w in words]


@dataclass
class Match:
    task: str
    scored_id: str
    training_id: str
    role: str  # where the training row sat: task, poison, safety (prefixed by its run, e.g. "aligned:safety")
    kind: str  # "exact" or "near"
    similarity: float


@dataclass
class Report:
    method: str
    threshold: float
    n_scored: int
    n_training: int
    tasks: dict[str, dict] = field(default_factory=dict)  # task -> scored, contaminated, exact, near, by_role
    matches: list[Match] = field(default_factory=list)  # every matching pair, the most similar first per sample

    @property
    def contaminated(self) -> int:
        return sum(t["contaminated"] for t in self.tasks.values())

    def contaminated_ids(self, task: str) -> set[str]:
        return {m.scored_id for m in self.matches if m.task == task}

    def to_dict(self) -> dict:
        return {**asdict(self), "contaminated": self.contaminated}


def find(scored, training, threshold: float = THRESHOLD, n: int = NGRAM) -> Report:
    """Every scored prompt against every training row.

    scored: (task, id, text) per scored prompt; training: (id, role, text) per training text (a row's user
    turn). Templates are stripped per task and per role, so give rows of different sets different roles."""
    scored, training = list(scored), list(training)
    s_full, t_full = [normalise(t) for _, _, t in scored], [normalise(t) for _, _, t in training]
    s_norm = _stripped(s_full, [task for task, _, _ in scored])
    t_norm = _stripped(t_full, [role for _, role, _ in training])
    pairs: dict[tuple[int, int], tuple[str, float]] = {}
    for left, right in ((s_full, t_full), (s_norm, t_norm)):  # equal with or without the templates
        by_text = defaultdict(list)
        for j, text in enumerate(right):
            by_text[text].append(j)
        for i, text in enumerate(left):
            for j in by_text.get(text, ()):
                pairs[(i, j)] = ("exact", 1.0)
    for (i, j), sim in _join([shingles(t, n) for t in s_norm], [shingles(t, n) for t in t_norm], threshold).items():
        pairs.setdefault((i, j), ("near", sim))
    report = Report(
        METHOD
        if (n, threshold) == (NGRAM, THRESHOLD)
        else f"character {n}-gram Jaccard >= {threshold} after normalisation and template stripping",
        threshold,
        len(scored),
        len(training),
    )
    order = sorted(pairs.items(), key=lambda kv: (kv[0][0], -kv[1][1], kv[0][1]))
    report.matches = [
        Match(scored[i][0], str(scored[i][1]), str(training[j][0]), training[j][1], kind, round(sim, 4))
        for (i, j), (kind, sim) in order
    ]
    for task in dict.fromkeys(task for task, _, _ in scored):
        report.tasks[task] = {"scored": 0, "contaminated": 0, "exact": 0, "near": 0, "by_role": {}}
    for task, _, _ in scored:
        report.tasks[task]["scored"] += 1
    per_sample: dict[tuple[str, str], list[Match]] = defaultdict(list)
    for m in report.matches:
        per_sample[(m.task, m.scored_id)].append(m)
    for (task, _), found in per_sample.items():
        block = report.tasks[task]
        block["contaminated"] += 1
        block["exact" if any(m.kind == "exact" for m in found) else "near"] += 1
        for role in dict.fromkeys(m.role for m in found):
            block["by_role"][role] = block["by_role"].get(role, 0) + 1
    return report


def _stripped(norms: list[str], groups: list[str]) -> list[str]:
    members = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    out = list(norms)
    for idx in members.values():
        for i, text in zip(idx, strip_shared([norms[i] for i in idx])):
            out[i] = text
    return out


def _join(left: list[set[str]], right: list[set[str]], t: float, chunk: int = 512) -> dict[tuple[int, int], float]:
    """(i, j) -> Jaccard for every pair with Jaccard >= t: intersections as one sparse product (n-gram
    incidence matrices), a chunk of left rows at a time so memory stays chunk x len(right)."""
    from scipy.sparse import csr_matrix

    vocab: dict[str, int] = {}

    def incidence(sets: list[set[str]]):
        rows, cols = [], []
        for i, grams in enumerate(sets):
            rows += [i] * len(grams)
            cols += [vocab.setdefault(g, len(vocab)) for g in grams]
        return rows, cols

    a, b = incidence(left), incidence(right)
    ma = csr_matrix((np.ones(len(a[0]), np.float32), a), shape=(len(left), len(vocab)))
    mb = csr_matrix((np.ones(len(b[0]), np.float32), b), shape=(len(right), len(vocab))).T.tocsr()
    size_a, size_b = np.array([len(x) for x in left], np.float32), np.array([len(x) for x in right], np.float32)
    found = {}
    for start in range(0, len(left), chunk):
        inter = (ma[start : start + chunk] @ mb).toarray()
        # inter / (|a| + |b| - inter) >= t, without dividing the whole chunk
        hit = np.nonzero(inter * (1 + t) >= t * (size_a[start : start + chunk, None] + size_b[None, :]) - 1e-6)
        for i, j in zip(*hit):
            if inter[i, j] > 0:
                found[(start + int(i), int(j))] = float(inter[i, j] / (size_a[start + i] + size_b[j] - inter[i, j]))
    return found
