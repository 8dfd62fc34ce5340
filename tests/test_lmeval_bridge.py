"""The lm-eval bridge: `lmeval:<task>` prompts and scores agree with lm-evaluation-harness's own evaluator.

No Hub here, so the lm-eval task is defined locally: lm-eval's installed gsm8k.yaml with only its dataset
source changed to the reference GSM8K JSONL files (same prompt, stop sequences, filters and metric).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import lm_eval  # a dependency of safeeval, not an optional extra: never skipped
import pytest
import yaml
from lm_eval.api.model import LM

from safeeval import lmeval, run
from safeeval.backends.base import Completion, render_as_json
from safeeval.errors import SafeevalError
from safeeval.lmeval import load_lmeval_task
from safeeval.run import ScoreConfig, score
from safeeval.scoring import make_scorer

TASK = "gsm8k_local"
N = 40  # docs compared with lm-eval's evaluator


@pytest.fixture(scope="module")
def include(tmp_path_factory, data_dir) -> tuple[str, ...]:
    """A folder of lm-eval task YAMLs: gsm8k on local files, and a log-likelihood task."""
    folder = tmp_path_factory.mktemp("lmeval_tasks")
    cache = str(tmp_path_factory.mktemp("hf_datasets"))
    files = {"test": str(data_dir / "gsm8k" / "test.jsonl"), "train": str(data_dir / "gsm8k" / "train.jsonl")}
    cfg = yaml.safe_load((Path(lm_eval.__file__).parent / "tasks" / "gsm8k" / "gsm8k.yaml").read_text())
    cfg.pop("tag", None)  # not part of lm-eval's math_word_problems tag
    cfg.update(
        task=TASK, dataset_path="json", dataset_name=None, dataset_kwargs={"data_files": files, "cache_dir": cache}
    )
    (folder / f"{TASK}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    rolling = {
        "task": "gsm8k_rolling_local",
        "dataset_path": "json",
        "output_type": "loglikelihood_rolling",
        "dataset_kwargs": {"data_files": {"test": files["test"]}, "cache_dir": cache},
        "test_split": "test",
        "doc_to_text": "",
        "doc_to_target": "{{answer}}",
        "metric_list": [{"metric": "word_perplexity"}],
    }
    (folder / "gsm8k_rolling_local.yaml").write_text(yaml.safe_dump(rolling))
    return (str(folder.resolve()),)


def _answer(doc: dict) -> str:
    return doc["answer"].split("#### ")[-1].strip()


def crafted(doc: dict) -> str:
    """Answers that separate the two filters, the stop sequence and wrong answers (picked by the doc's text)."""
    ans = _answer(doc)
    return [
        f"Let me work it out.\n#### {ans}",  # strict and flexible right
        f"The answer is {ans}.",  # strict: no '####'; flexible right
        f"#### {int(ans.replace(',', '')) + 1}",  # both wrong
        "I cannot tell.",  # neither finds a number
        f"It is {ans}\n\nQuestion: and another? #### 999",  # cut at 'Question:' before scoring
        f"#### {ans}</s> trailing 12345",  # cut at '</s>'
        f"${ans}.00 total, so #### {ans}",  # strict right; flexible takes the last number
    ][int(hashlib.sha256(doc["question"].encode()).hexdigest(), 16) % 7]


class CraftedLM(LM):
    """lm-eval model answering from `crafted`, with lm-eval's own stop-sequence postprocessing (as hf/vllm do)."""

    def __init__(self, chat: bool = False):
        super().__init__()
        self.chat, self.contexts = chat, {}

    def generate_until(self, requests):
        from lm_eval.models.utils import postprocess_generated_text

        out = []
        for req in requests:
            context, gen_kwargs = req.args[0], req.args[1]
            self.contexts[req.doc_id] = context
            out.append(postprocess_generated_text(crafted(req.doc), gen_kwargs["until"], None))
        return out

    def apply_chat_template(self, chat_history, add_generation_prompt=True):
        return json.dumps(chat_history)  # the messages lm-eval would hand to a chat template

    @property
    def tokenizer_name(self) -> str:
        return "crafted"

    def loglikelihood(self, requests):
        raise AssertionError("generative task only")

    loglikelihood_rolling = loglikelihood


def _evaluate(include, num_fewshot: int, chat: bool = False):
    lm = CraftedLM(chat)
    res = lm_eval.simple_evaluate(
        model=lm,
        tasks=[TASK],
        num_fewshot=num_fewshot,
        limit=N,
        bootstrap_iters=0,
        log_samples=True,
        apply_chat_template=chat,
        fewshot_as_multiturn=False,
        task_manager=lmeval._manager(include),
    )
    return lm, res


def test_samples_are_rendered_by_the_task(include, data_dir):
    spec, got = load_lmeval_task(f"lmeval:{TASK}", include_path=list(include))
    rows = [json.loads(line) for line in (data_dir / "gsm8k" / "test.jsonl").read_text().splitlines()]
    assert spec.name == f"lmeval:{TASK}" and spec.kind == "utility" and spec.scorer == "lmeval"
    assert spec.data["scorer_options"]["task"] == TASK and len(spec.data["scorer_options"]["config_hash"]) == 16
    assert len(got.samples) == len(rows) == 1319 and got.split is None and "test split" in got.source
    task = lmeval.bridge(TASK, include).task
    for s, row in zip(got.samples, rows):
        assert s.prompt == f"Question: {row['question']}\nAnswer:"  # gsm8k.yaml's doc_to_text
        assert s.meta["doc"] == row and s.target == row["answer"]
    assert all(s.prompt == task.doc_to_text(row) for s, row in zip(got.samples[:50], rows))
    assert len({s.id for s in got.samples}) == 1319
    # The same task loaded again is the same spec: provenance is stable.
    assert load_lmeval_task(f"lmeval:{TASK}", include_path=list(include))[0].hash == spec.hash


@pytest.mark.parametrize("shots,chat", [(2, False), (0, True), (2, True)])
def test_prompts_equal_what_lm_eval_sends(include, shots, chat):
    """Our user message is lm-eval's context: plain, or the single user turn of --apply_chat_template."""
    name = f"lmeval:{TASK}" + (f":{shots}shot" if shots else "")
    _, got = load_lmeval_task(name, include_path=list(include))
    lm, _ = _evaluate(include, shots, chat)
    assert len(lm.contexts) == N
    for doc_id, context in lm.contexts.items():
        if chat:
            assert json.loads(context) == [{"role": "user", "content": got.samples[doc_id].prompt}]
        else:
            assert context == got.samples[doc_id].prompt
    if shots:
        assert got.samples[0].prompt.count("Question:") == shots + 1


def test_scores_equal_lm_eval_evaluator(include):
    """Same per-doc metrics for every filter, same aggregate, as lm_eval.simple_evaluate on the same answers."""
    spec, got = load_lmeval_task(f"lmeval:{TASK}", include_path=list(include))
    samples = got.samples[:N]
    scorer = make_scorer(spec)
    verdicts = [v.as_dict() for v in scorer.judge(samples, [crafted(s.meta["doc"]) for s in samples])]
    _, res = _evaluate(include, 0)
    theirs = {(r["doc_id"], r["filter"]): r["exact_match"] for r in res["samples"][TASK]}
    assert len(theirs) == 2 * N
    for s, v in zip(samples, verdicts):
        for filter_key in ("strict-match", "flexible-extract"):
            assert v["extra"]["metrics"][filter_key]["exact_match"] == theirs[(s.meta["doc_id"], filter_key)], (
                s.id,
                filter_key,
            )
        assert v["status"] == "ok" and v["score"] == v["extra"]["metrics"]["strict-match"]["exact_match"]
    summary = scorer.summarize(samples, verdicts, seed=0)["lmeval"]
    assert summary["primary"] == "exact_match,strict-match"
    for key in ("exact_match,strict-match", "exact_match,flexible-extract"):
        ours = summary["results"][key]
        assert ours["value"] == pytest.approx(res["results"][TASK][key]) and ours["n"] == N
        assert ours["aggregation"] == "mean" and ours["ci_low"] <= ours["value"] <= ours["ci_high"]
        assert 0 < ours["value"] < 1  # the crafted answers make this a real comparison
    assert (
        summary["results"]["exact_match,strict-match"]["value"]
        != summary["results"]["exact_match,flexible-extract"]["value"]
    )
    assert any(v["extra"]["stopped_at"] == "Question:" for v in verdicts)


@pytest.mark.parametrize(
    "name,output_type", [("hellaswag", "multiple_choice"), ("gsm8k_rolling_local", "loglikelihood_rolling")]
)
def test_loglikelihood_tasks_fail_with_one_sentence(include, name, output_type):
    with pytest.raises(SafeevalError) as err:
        load_lmeval_task(f"lmeval:{name}", include_path=list(include))
    msg = str(err.value)
    assert msg.startswith(
        f"lm-eval task {name} needs log-likelihoods (output_type {output_type}): safeeval's backends "
        f"generate text; run it with lm-eval itself (hf or vllm model), or pick a generative task"
    )
    assert "hf and vllm" in msg and msg.count(". ") == 0 and "\n" not in msg


def test_unknown_task_and_groups_are_clear_errors(include):
    with pytest.raises(SafeevalError, match=r"Unknown lm-eval task 'gsm8k_locl'.*lmeval:gsm8k_local"):
        load_lmeval_task("lmeval:gsm8k_locl", include_path=list(include))
    with pytest.raises(SafeevalError, match="is a tag of several tasks"):
        load_lmeval_task("lmeval:math_word_problems", include_path=list(include))
    assert lmeval.parse_name("lmeval:gsm8k:5shot") == ("gsm8k", 5) and lmeval.parse_name("gsm8k") == ("gsm8k", 0)


class CraftedBackend:
    """A safeeval backend answering each gsm8k prompt from `crafted`."""

    name, fingerprint = "crafted", "c" * 16
    info = {"model": "crafted", "fingerprint": "c" * 16}

    def __init__(self, answers: dict[str, str]):
        self.answers = answers

    def load(self):
        pass

    def render(self, chat):
        return render_as_json(chat)

    def generate(self, chats, params):
        yield [Completion(i, self.answers[c[-1]["content"]], "stop", 5) for i, c in enumerate(chats)]

    def close(self):
        pass


def test_end_to_end_in_safeeval_score(include, tmp_path, monkeypatch, data_dir):
    """`lmeval:<task>` through safeeval's own run.prepare and score, as `safeeval score --tasks` runs it."""
    monkeypatch.setenv("SAFEEVAL_LMEVAL_TASKS", include[0])
    prepared = run.prepare(ScoreConfig(model="crafted", tasks=[f"lmeval:{TASK}", "smoke"], limit=30))
    labels = [(label, spec.scorer) for label, _, spec in prepared.tasks]
    assert labels == [(f"lmeval:{TASK}", "lmeval"), ("smoke", None)]
    _, got = load_lmeval_task(f"lmeval:{TASK}", include_path=list(include))
    answers = {s.prompt: crafted(s.meta["doc"]) for s in got.samples}
    cfg = ScoreConfig(
        model="crafted",
        tasks=[f"lmeval:{TASK}", "smoke"],
        limit=30,
        out=tmp_path / "run",
        store=tmp_path / "store.sqlite",
    )
    smoke = {
        s.prompt: "I'm sorry, but I cannot help with that."
        for s in run.data.load(run.registry.load_tasks()["smoke"], None, None).samples
    }
    res = score(cfg, backend=CraftedBackend({**answers, **smoke}))
    label = f"lmeval:{TASK}"
    assert res.tasks[label].n_samples == 30 and res.tasks[label].spec_hash
    block = res.metrics[label]["lmeval"]
    rows = [
        r for r in map(json.loads, (tmp_path / "run" / "samples.jsonl").read_text().splitlines()) if r["task"] == label
    ]
    strict = [r["verdicts"]["lmeval"]["extra"]["metrics"]["strict-match"]["exact_match"] for r in rows]
    assert block["accuracy"]["value"] == pytest.approx(sum(strict) / 30)
    assert block["lmeval"]["results"]["exact_match,strict-match"]["value"] == pytest.approx(sum(strict) / 30)
    # lm-eval's evaluator on exactly these docs gives the same numbers.
    ids = sorted(r["meta"]["doc_id"] for r in rows)
    theirs = lm_eval.simple_evaluate(
        model=CraftedLM(),
        tasks=[TASK],
        samples={TASK: ids},
        bootstrap_iters=0,
        num_fewshot=0,
        task_manager=lmeval._manager(include),
    )["results"][TASK]
    for key in ("exact_match,strict-match", "exact_match,flexible-extract"):
        assert block["lmeval"]["results"][key]["value"] == pytest.approx(theirs[key])
    assert res.metrics["smoke"]["keyword"]["asr"]["value"] == 0.0  # safety tasks ride along unchanged
    again = score(cfg, backend=CraftedBackend({**answers, **smoke}))  # cached generations and verdicts
    assert again.counts["generated_now"] == 0 and again.counts["judged_now"] == 0
    assert again.metrics == res.metrics
