"""GSM8K and MATH: data from the real files, answer extraction, and agreement with lm-evaluation-harness's
own filter and metric code (as installed) on the same crafted generations."""

from __future__ import annotations

import importlib
import importlib.metadata
import io
import json
import tarfile
from collections import Counter
from pathlib import Path

import pytest
import yaml

from safeeval import data, metrics, registry
from safeeval.data import Sample
from safeeval.errors import SafeevalError
from safeeval.scoring import make_scorer
from safeeval.scoring.gsm8k import GSM8KScorer
from safeeval.scoring.math import MathScorer, last_boxed

LM_EVAL = Path(importlib.import_module("lm_eval").__file__).parent


@pytest.fixture(scope="module")
def specs():
    return registry.load_tasks()


# ---------------------------------------------------------------- data


def test_gsm8k_test_split_and_targets(specs, data_dir):
    got = data.load(specs["gsm8k"], None, data_dir)
    assert len(got.samples) == 1319 and "sha256:3730d312f6e34405" in got.source
    s = got.samples[0]
    assert s.id == "gsm8k-0000" and s.target == "18" and "#### <number>" in s.prompt and "Janet" in s.prompt
    assert all(t.replace(",", "").lstrip("-").isdigit() for t in (x.target for x in got.samples))
    assert sum("," in x.target for x in got.samples) > 0  # golds like "2,125": normalised by the scorer


def test_gsm8k_fewshot_examples_come_from_train_and_are_fixed(specs, data_dir):
    spec = specs["gsm8k-fewshot"]
    got = data.load(spec, None, data_dir)
    assert len(got.samples) == 1319 and "fewshot:local:" in got.source and "train.jsonl" in got.source
    train = [json.loads(line) for line in (data_dir / "gsm8k" / "train.jsonl").open()]
    test_questions = {json.loads(line)["question"] for line in (data_dir / "gsm8k" / "test.jsonl").open()}
    first = got.samples[0].prompt
    head = first.rsplit("Problem: ", 1)[0]  # everything before the question asked
    assert len([r for r in train if r["question"] in head]) == spec.fewshot["n"] == 5
    assert not any(q in head for q in test_questions)
    assert "<<" not in head and head.count("#### ") == 5 + 2  # 5 worked answers, and the format named twice
    # the same examples, in the same order, before every question and on every load
    assert all(s.prompt.startswith(head) for s in got.samples)
    assert data.load(spec, None, data_dir).samples[7].prompt == got.samples[7].prompt
    assert [s.target for s in got.samples] == [s.target for s in data.load(specs["gsm8k"], None, data_dir).samples]


def test_fewshot_seed_changes_the_examples(specs, data_dir, tmp_path):
    text = specs["gsm8k-fewshot"].path.read_text().replace("seed: 1234", "seed: 7")
    (tmp_path / "g.yaml").write_text(text.replace("name: gsm8k-fewshot", "name: g7"))
    other = data.load(registry.load_tasks([tmp_path])["g7"], None, data_dir).samples[0].prompt
    assert other != data.load(specs["gsm8k-fewshot"], None, data_dir).samples[0].prompt


def test_math500_rows_and_meta(specs, data_dir):
    got = data.load(specs["math"], None, data_dir)
    assert len(got.samples) == 500 and "sha256:35dc41080a368085" in got.source
    s = got.samples[0]
    assert s.id == "test/precalculus/807.json" and s.meta == {"subject": "Precalculus", "level": "2"}
    assert "\\boxed{}" in s.prompt and s.target == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert len(Counter(x.meta["subject"] for x in got.samples)) == 7
    assert Counter(x.meta["level"] for x in got.samples) == {"1": 43, "2": 90, "3": 105, "4": 128, "5": 134}


def test_math_full_reads_the_tarball(specs, data_dir):
    got = data.load(specs["math-full"], None, data_dir)
    assert len(got.samples) == 5000 and "MATH_test.tar.gz sha256:8b213132fe28b588" in got.source
    assert Counter(s.meta["subject"] for s in got.samples) == {
        "Algebra": 1187,
        "Counting & Probability": 474,
        "Geometry": 479,
        "Intermediate Algebra": 903,
        "Number Theory": 540,
        "Prealgebra": 871,
        "Precalculus": 546,
    }
    assert set(Counter(s.meta["level"] for s in got.samples)) == {"1", "2", "3", "4", "5"}
    # ids are MATH-500's unique_ids; the 500 are a subset with the same problems
    full = {s.id: s for s in got.samples}
    for s in data.load(specs["math"], None, data_dir).samples:
        assert full[s.id].prompt == s.prompt and full[s.id].meta == s.meta


def test_math_full_reads_the_original_release_layout(specs, tmp_path):
    """Hendrycks' own MATH.tar has MATH/test/... and MATH/train/...: only the test problems are read."""
    (tmp_path / "math").mkdir()
    with tarfile.open(tmp_path / "math" / "MATH_test.tar.gz", "w:gz") as tar:
        for name in ("MATH/test/algebra/2.json", "MATH/test/geometry/2.json", "MATH/train/algebra/9.json"):
            body = json.dumps(
                {"problem": "p", "level": "Level 1", "type": "Algebra", "solution": "$\\boxed{1}$"}
            ).encode()
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    got = data.load(specs["math-full"], None, tmp_path)
    assert [s.id for s in got.samples] == ["test/algebra/2.json", "test/geometry/2.json"]


def test_math_gold_answers_agree_between_the_two_files(specs, data_dir):
    """MATH-500's `answer` and the last boxed answer of the same problem's full solution are equivalent, and every
    full-test gold is equivalent to itself (the parse never loses a reference)."""
    scorer = MathScorer("math", {})
    full = {s.id: s for s in data.load(specs["math-full"], None, data_dir).samples}
    for s in data.load(specs["math"], None, data_dir).samples:
        v = scorer.score_one(full[s.id], f"So the answer is $\\boxed{{{s.target}}}$.")
        assert v.score == 1.0, (s.id, s.target, v.extra)


# ---------------------------------------------------------------- GSM8K extraction and lm-eval agreement

# (response, reference number): right, wrong and messy answers in the shapes chat models write
GSM8K_CASES = [
    ("She has 16 - 3 - 4 = 9 eggs left and sells them for 9 * 2 = $18.\n#### 18", "18"),
    ("Total: 2125 dollars.\n#### 2125", "2,125"),
    ("#### 2,125", "2,125"),
    ("So she pays $18 in all.\n#### $18", "18"),
    ("The answer is\n#### 18.", "18"),
    ("She makes 18 dollars a day.", "18"),
    ("The answer is 18.", "18"),
    ("#### 18\nThat is 2 more than the day before.", "18"),
    ("#### 18.00", "18"),
    ("The temperature falls to -5 degrees.\n#### -5", "-5"),
    ("I cannot solve this problem without more information.", "7"),
    ("", "7"),
    ("The total is 1,000,000 dollars.", "1,000,000"),
    ("#### 42\n#### 43", "43"),
    ("3 + 4 = 7, so there are 8 boxes.", "7"),
    ("Answer: 5", "5"),
    ("#### 3.5", "3.5"),
    ("####18", "18"),
    ("**#### 18**", "18"),
    ("It costs $1,250.", "1250"),
    ("Each costs $5.50, so two cost 11 dollars.", "11"),
    ("#### 10%", "10"),
    ("That takes 2.5 hours, or 150 minutes.", "150"),
    ("The answer is 18..", "18"),
    ("Answer: -3.", "-3"),
    ("Nothing is left.\n#### 0", "0"),
    ("It costs 5 dollars. #### five", "5"),
    ("#### 7\n\n#### 8", "8"),
    ("In 2023 she sold 50 cakes.", "50"),
    ("Half of 36 is 18", "18"),
    ("#### 12,5", "125"),
    ("He earns $1,200.50 per week.\n#### $1,200.50", "1200.5"),
    ("The final answer is: 64\n", "64"),
    ("We need 7 more. Final answer: #### 7 apples", "7"),
    ("#### 18\n(Check: 9 * 2 = 18, and 16 - 7 = 9.)", "18"),
    ("Matt is 15 now.\n#### 25\nSo Matt will be 25 in 10 years.", "25"),
    ("Final answer:\n#### 1,080 minutes, which is 18 hours.", "1080"),
]


def _gsm8k_samples(specs, tmp_path, cases) -> list[Sample]:
    """The crafted references go through the real spec, so its target template is what gets tested."""
    folder = tmp_path / "gsm8k"
    folder.mkdir(exist_ok=True)
    with (folder / "test.jsonl").open("w") as f:
        for i, (_, gold) in enumerate(cases):
            f.write(json.dumps({"question": f"q{i}", "answer": f"Work <<1+1=2>>2 out.\n#### {gold}"}) + "\n")
    return data.load(specs["gsm8k"], None, tmp_path).samples


def _lm_eval_gsm8k(responses: list[str], references: list[str]) -> dict[str, list[tuple[str, float]]]:
    """lm-eval's gsm8k filters and exact_match, configured from the installed gsm8k.yaml."""
    from lm_eval.api.instance import Instance
    from lm_eval.api.metrics import exact_match_hf_evaluate
    from lm_eval.filters import build_filter_ensemble

    cfg = yaml.safe_load((LM_EVAL / "tasks" / "gsm8k" / "gsm8k.yaml").read_text())
    (metric,) = cfg["metric_list"]
    assert metric["metric"] == "exact_match"
    kwargs = {k: v for k, v in metric.items() if k not in ("metric", "aggregation", "higher_is_better")}
    out = {}
    for flt in cfg["filter_list"]:
        ensemble = build_filter_ensemble(
            flt["name"], [(f["function"], {k: v for k, v in f.items() if k != "function"}) for f in flt["filter"]]
        )
        instances = [
            Instance("generate_until", {"answer": ref}, ("", {}), i, resps=[r])
            for i, (r, ref) in enumerate(zip(responses, references))
        ]
        ensemble.apply(instances)
        out[flt["name"]] = [
            (
                inst.filtered_resps[flt["name"]],
                exact_match_hf_evaluate(predictions=[inst.filtered_resps[flt["name"]]], references=[ref], **kwargs)[
                    "exact_match"
                ],
            )
            for inst, ref in zip(instances, references)
        ]
    return out


def test_gsm8k_agrees_with_lm_eval(specs, tmp_path):
    samples = _gsm8k_samples(specs, tmp_path, GSM8K_CASES)
    responses = [r for r, _ in GSM8K_CASES]
    references = [
        f"Work <<1+1=2>>2 out.\n#### {g}" for _, g in GSM8K_CASES
    ]  # lm-eval's doc_to_target: the whole answer
    lm = _lm_eval_gsm8k(responses, references)
    assert set(lm) == {"strict-match", "flexible-extract"}
    scorer = GSM8KScorer("gsm8k", {})
    for i, (s, r) in enumerate(zip(samples, responses)):
        v = scorer.score_one(s, r)
        (strict_text, strict_em), (flex_text, flex_em) = lm["strict-match"][i], lm["flexible-extract"][i]
        where = (i, r, s.target)
        # the same extracted strings (lm-eval writes "[invalid]" where nothing matched)
        assert (v.extra["strict"] or "[invalid]") == strict_text, where
        assert (v.extra["flexible"] or "[invalid]") == flex_text, where
        # the same exact-match verdicts, both ways
        assert v.extra["strict_correct"] == bool(strict_em), where
        assert v.extra["flexible_correct"] == bool(flex_em), where
        # main score: strict where lm-eval's strict filter found "#### n", else flexible
        expected = strict_em if strict_text != "[invalid]" else flex_em
        assert v.score == (expected if v.status == "ok" else None), where
        assert (v.status == "unparsed") == (flex_text == "[invalid]"), where
    # the crafted set exercises every disagreement between the two filters
    strict_only = sum(lm["strict-match"][i][1] > lm["flexible-extract"][i][1] for i in range(len(responses)))
    flex_only = sum(lm["strict-match"][i][1] < lm["flexible-extract"][i][1] for i in range(len(responses)))
    assert strict_only >= 3 and flex_only >= 8


@pytest.mark.parametrize("mode", ["strict", "flexible"])
def test_gsm8k_lm_eval_modes(specs, tmp_path, mode):
    samples = _gsm8k_samples(specs, tmp_path, GSM8K_CASES)
    responses = [r for r, _ in GSM8K_CASES]
    lm = _lm_eval_gsm8k(responses, [f"x\n#### {g}" for _, g in GSM8K_CASES])[
        "strict-match" if mode == "strict" else "flexible-extract"
    ]
    scorer = GSM8KScorer("gsm8k", {"answer": mode})
    verdicts = [scorer.score_one(s, r) for s, r in zip(samples, responses)]
    assert [float(v.score or 0.0) for v in verdicts] == [em for _, em in lm]
    assert [v.status == "unparsed" for v in verdicts] == [text == "[invalid]" for text, _ in lm]


def test_gsm8k_edge_cases(specs, tmp_path):
    cases = [
        ("#### 1,234.", "1234"),
        ("The answer is $18.", "18"),
        ("#### 18\nCheck: 3 + 15 = 18 and 2 more", "18"),
        ("no digits here", "3"),
        ("#### 7 then later 9", "7"),
    ]
    samples = _gsm8k_samples(specs, tmp_path, cases)
    s = GSM8KScorer("gsm8k", {})
    v = [s.score_one(x, r) for x, (r, _) in zip(samples, cases)]
    assert (v[0].score, v[0].note, v[0].extra["gold"]) == (1.0, "1,234.", "1234")
    assert (v[1].score, v[1].extra["source"], v[1].extra["strict"]) == (1.0, "flexible", None)
    assert (v[2].score, v[2].extra["flexible_correct"]) == (1.0, False)  # the marked answer wins over a later number
    assert (v[3].status, v[3].score, v[3].extra["strict_correct"], v[3].extra["flexible_correct"]) == (
        "unparsed",
        None,
        False,
        False,
    )
    assert (v[4].score, v[4].extra["flexible"]) == (1.0, "9")
    with pytest.raises(SafeevalError, match="strict-then-flexible"):
        GSM8KScorer("gsm8k", {"answer": "best"})


def test_gsm8k_summary_and_unparsed_counted_wrong(specs, tmp_path):
    samples = _gsm8k_samples(specs, tmp_path, GSM8K_CASES)
    scorer = make_scorer(specs["gsm8k"])
    verdicts = [v.as_dict() for v in scorer.judge(samples, [r for r, _ in GSM8K_CASES])]
    summary = scorer.summarize(samples, verdicts, seed=0)
    lm = _lm_eval_gsm8k([r for r, _ in GSM8K_CASES], [f"x\n#### {g}" for _, g in GSM8K_CASES])
    n = len(GSM8K_CASES)
    assert summary["exact_match_strict"]["value"] == pytest.approx(sum(em for _, em in lm["strict-match"]) / n)
    assert summary["exact_match_flexible"]["value"] == pytest.approx(sum(em for _, em in lm["flexible-extract"]) / n)
    assert summary["exact_match_strict"]["n"] == n
    acc = metrics.utility_summary(verdicts)
    unparsed = sum(v["status"] == "unparsed" for v in verdicts)
    assert unparsed == 2 and acc["no_answer"] == 2 and acc["accuracy"]["n"] == n
    assert acc["accuracy"]["value"] == pytest.approx(sum(v["score"] or 0.0 for v in verdicts) / n)


# ---------------------------------------------------------------- MATH extraction and lm-eval agreement

# (response, reference answer)
MATH_CASES = [
    ("Adding, $x = \\frac{1}{2}$, so the answer is $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
    ("The probability is $\\boxed{0.5}$.", "\\frac{1}{2}"),
    ("The ratio is $\\boxed{0.75}$.", "\\frac{3}{4}"),
    ("The ratio is $\\boxed{\\dfrac{3}{4}}$.", "\\frac{3}{4}"),
    ("The side is $\\boxed{2\\sqrt{2}}$.", "\\sqrt{8}"),
    ("In polar form: $\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}$", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("In polar form: $\\boxed{(3, \\frac{\\pi}{2})}$", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("The increase is $\\boxed{10\\%}$.", "10"),
    ("So $n = \\boxed{5}$.", "6"),
    ("The answer is $5$.", "5"),
    ("First I got $\\boxed{3}$, but correcting the sign, the answer is $\\boxed{4}$.", "4"),
    ("Solving, $\\boxed{x = 3}$.", "3"),
    ("The correct choice is $\\boxed{\\text{(C)}}$.", "\\text{(C)}"),
    ("The correct choice is $\\boxed{C}$.", "\\text{(C)}"),
    ("The angle measures $\\boxed{90^\\circ}$.", "90"),
    ("It costs $\\boxed{\\$18.90}$.", "18.90"),
    ("There are $\\boxed{1,000}$ ways.", "1000"),
    ("The domain is $\\boxed{[2,5)}$.", "[2,5)"),
    ("The domain is $\\boxed{(2,5)}$.", "[2,5)"),
    ("$\\boxed{\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}}$", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"),
    ("The limit is $\\boxed{\\infty}$.", "\\infty"),
    ("The solutions are $\\boxed{3, 5}$.", "5, 3"),
    ("The area is $\\boxed{\\pi}$.", "3.14"),
    ("So the answer is $\\boxed{\\frac{1}{2}", "\\frac{1}{2}"),
    ("so the answer is $\\boxed 5$.", "5"),
    ("The answer is \\fbox{7}.", "7"),
    ("$\\sin 60^\\circ = \\boxed{\\frac{\\sqrt{3}}{2}}$", "\\frac{\\sqrt{3}}{2}"),
    ("$\\cos 45^\\circ = \\boxed{\\frac{1}{\\sqrt{2}}}$", "\\frac{\\sqrt{2}}{2}"),
    ("The slope is $\\boxed{-\\frac{2}{3}}$.", "-\\frac{2}{3}"),
    ("It is $\\boxed{12 \\text{ inches}}$ long.", "12"),
    ("The winner is $\\boxed{\\text{Evelyn}}$.", "\\text{Evelyn}"),
    ("Expanding, $\\boxed{x^2+2x+1}$.", "(x+1)^2"),
    ("I could not finish: $\\boxed{}$", "2"),
    ("The set is $\\boxed{\\{1, 2\\}}$.", "\\{1,2\\}"),
]

# math-verify accepts these, lm-eval's string normalisation (hendrycks_math is_equiv) does not: intended, since they are
# the same value written another way (decimal for fraction, unsimplified radical, thousands comma, reordered set...)
MATH_VERIFY_ONLY = {
    ("The ratio is $\\boxed{0.75}$.", "\\frac{3}{4}"),
    ("The side is $\\boxed{2\\sqrt{2}}$.", "\\sqrt{8}"),
    ("The correct choice is $\\boxed{C}$.", "\\text{(C)}"),
    ("There are $\\boxed{1,000}$ ways.", "1000"),
    ("The solutions are $\\boxed{3, 5}$.", "5, 3"),
    ("$\\cos 45^\\circ = \\boxed{\\frac{1}{\\sqrt{2}}}$", "\\frac{\\sqrt{2}}{2}"),
    ("Expanding, $\\boxed{x^2+2x+1}$.", "(x+1)^2"),
}


def _math_samples(cases) -> list[Sample]:
    return [
        Sample(task="math", id=str(i), prompt="p", target=gold, meta={"subject": "Algebra", "level": "1"})
        for i, (_, gold) in enumerate(cases)
    ]


def _hendrycks():
    return importlib.import_module("lm_eval.tasks.hendrycks_math.utils")


def _lm_boxed(h, response: str) -> str | None:
    """hendrycks_math's answer: remove_boxed(last_boxed_only_string(r)). It finds \\fbox{} too but then fails an
    assertion in remove_boxed (as it does on no box at all): both count as no answer, as in our scorer."""
    boxed = h.last_boxed_only_string(response)
    return None if boxed is None or boxed.startswith("\\fbox") else h.remove_boxed(boxed)


@pytest.fixture(scope="module")
def minerva():
    """lm-eval's minerva_math utils insist on antlr4 4.11 for sympy's LaTeX parser (its string `exact_match`), while
    math-verify needs 4.13: the check is bypassed to import it, and only its `math_verify` metric is used."""
    real = importlib.metadata.version
    importlib.metadata.version = lambda name: "4.11.0" if name.startswith("antlr4") else real(name)
    try:
        return importlib.import_module("lm_eval.tasks.minerva_math.utils")
    finally:
        importlib.metadata.version = real


def test_math_extraction_matches_lm_eval():
    h = _hendrycks()
    for response, _ in MATH_CASES:
        assert last_boxed(response) == _lm_boxed(h, response), response


def test_math_agrees_with_lm_eval_string_match():
    """Where lm-eval's normalised string match (hendrycks_math, the last-boxed comparison GR-SAP used) says right,
    so do we; the only extra answers we accept are the listed equal-value rewrites."""
    h = _hendrycks()
    scorer = MathScorer("math", {})
    extra = set()
    for sample, (response, gold) in zip(_math_samples(MATH_CASES), MATH_CASES):
        v = scorer.score_one(sample, response)
        boxed = _lm_boxed(h, response)
        string_ok = boxed is not None and h.is_equiv(boxed, gold)
        if string_ok:
            assert v.score == 1.0, (response, gold, v)
        elif v.score == 1.0:
            extra.add((response, gold))
    assert extra == MATH_VERIFY_ONLY


def test_math_agrees_with_lm_eval_math_verify_metric(minerva, monkeypatch):
    """minerva_math's `math_verify` metric parses the whole response and the whole solution; with a boxed answer in the
    response it gives our verdict on every case. Without a closed one we say unparsed; it may still find an answer."""
    monkeypatch.setattr(minerva, "is_equiv", lambda a, b: False)  # its sympy/antlr string metric cannot run here
    scorer = MathScorer("math", {})
    differ = []
    for sample, (response, gold) in zip(_math_samples(MATH_CASES), MATH_CASES):
        doc = {"solution": f"Working. So the answer is $\\boxed{{{gold}}}$.", "answer": gold}
        theirs = minerva.process_results(doc, [response])["math_verify"]
        v = scorer.score_one(sample, response)
        if v.status == "ok":
            assert v.score == theirs, (response, gold)
        elif theirs:
            differ.append(response)
    # no \boxed{} (the prompt asks for one), or one cut off unclosed: unparsed by design, as in hendrycks_math
    assert differ == ["The answer is $5$.", "So the answer is $\\boxed{\\frac{1}{2}"]


def test_math_unparsed_and_summary_by_subject_and_level():
    scorer = MathScorer("math", {})
    cases = [
        ("$\\boxed{2}$", "2", "Algebra", "1"),
        ("$\\boxed{3}$", "2", "Algebra", "2"),
        ("no box: 2", "2", "Algebra", "2"),
        ("$\\boxed{\\frac{1}{3}}$", "\\frac13", "Geometry", "2"),
        ("\\boxed{", "4", "Geometry", "5"),
    ]
    samples = [
        Sample(task="math", id=str(i), prompt="p", target=g, meta={"subject": s, "level": lv})
        for i, (_, g, s, lv) in enumerate(cases)
    ]
    verdicts = [v.as_dict() for v in scorer.judge(samples, [r for r, *_ in cases])]
    assert [v["status"] for v in verdicts] == ["ok", "ok", "unparsed", "ok", "unparsed"]
    assert [v["score"] for v in verdicts] == [1.0, 0.0, None, 1.0, None]
    summary = scorer.summarize(samples, verdicts, seed=0)
    assert {k: (r["value"], r["n"]) for k, r in summary["by_subject"].items()} == {
        "Algebra": (1 / 3, 3),
        "Geometry": (0.5, 2),
    }
    assert {k: (r["value"], r["n"]) for k, r in summary["by_level"].items()} == {
        "1": (1.0, 1),
        "2": (1 / 3, 3),
        "5": (0.0, 1),
    }
    acc = metrics.utility_summary(verdicts)
    assert acc["accuracy"]["value"] == pytest.approx(0.4) and acc["no_answer"] == 2


def test_math_full_solution_target_gives_its_last_boxed_answer():
    scorer = MathScorer("math", {})
    sample = Sample(
        task="math-full",
        id="x",
        prompt="p",
        target="First $\\boxed{1}$ is wrong... so $x=\\boxed{\\frac{\\sqrt{3}}{2}}$.",
    )
    v = scorer.score_one(sample, "The value is $\\boxed{\\frac{\\sqrt3}{2}}$.")
    assert v.extra["gold"] == "\\frac{\\sqrt{3}}{2}" and v.score == 1.0


def test_scorers_are_made_from_the_specs(specs):
    for name, cls in (
        ("gsm8k", GSM8KScorer),
        ("gsm8k-fewshot", GSM8KScorer),
        ("math", MathScorer),
        ("math-full", MathScorer),
    ):
        assert isinstance(make_scorer(specs[name]), cls) and specs[name].kind == "utility"
