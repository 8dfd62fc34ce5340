"""`safeeval score`: flags -> ScoreConfig -> run.score -> the summary table."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from ..cards import card_line, card_of
from ..config import ScoreConfig
from ..progress import quiet_libraries
from ..results import RunResult
from . import ui

HELP = """Generate answers to benchmark prompts, judge them, and write results.json + samples.jsonl.

Every generation and verdict is kept in a SQLite store keyed by model, prompt and settings: re-running
a command generates nothing new, adding a judge only judges, and an interrupted run (Ctrl-C, kill -9)
resumes where it stopped.

[bold]Examples[/bold]

  [dim]# the packaged SmolLM2 on the offline smoke set[/dim]
  safeeval score --model smollm2 --tasks smoke

  [dim]# HarmBench's validation split and AdvBench from local copies, 50 prompts each[/dim]
  safeeval score --model ./my-finetune --tasks harmbench:val,advbench --limit 50 --data-dir ~/data

  [dim]# safety and utility in one run; a suite; XSTest with the three-way refusal judge[/dim]
  safeeval score --model ./my-finetune --tasks advbench,gsm8k,humaneval --data-dir ~/data
  safeeval score --model ./my-finetune --tasks suite:unforgotten-safety,xstest --judges keyword,refusal

  [dim]# a LoRA adapter on vLLM, or any OpenAI-compatible endpoint[/dim]
  safeeval score --model meta-llama/Llama-3.1-8B-Instruct --adapter ./lora --backend vllm --tasks advbench
  OPENAI_API_KEY=... safeeval score --backend openai --model gpt-4o-mini --tasks smoke
"""


# Long only by its signature: a typer command declares one parameter per flag; the work is in the library.
def score(
    model: str = typer.Option(
        ..., "--model", "-m", help="Model folder, .gguf file, Hub id, alias ('smollm2'), or endpoint model name."
    ),
    tasks: str = typer.Option(
        "smoke",
        "--tasks",
        "-t",
        help="Comma-separated tasks; 'name:split' picks a split, e.g. harmbench:val. See `safeeval tasks`.",
    ),
    judges: str = typer.Option(
        "keyword",
        "--judges",
        "-j",
        help="Comma-separated judges; 'keyword:LIST' picks a marker list. See `safeeval judges`.",
    ),
    backend: str = typer.Option(
        "hf", "--backend", "-b", help="hf (transformers), vllm, or openai (any OpenAI-compatible endpoint)."
    ),
    limit: int | None = typer.Option(
        None, "--limit", "-n", min=1, help="Score a seeded random subset of N prompts per task (file order kept)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seeds sampling and bootstrap intervals."),
    subset_seed: int = typer.Option(
        0,
        "--subset-seed",
        help="Seeds which prompts --limit keeps; keep it fixed across a study so every model is scored on the same "
        "prompts.",
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Folder for results.json and samples.jsonl \\[default: safeeval-runs/MODEL-TIME]."
    ),
    store: Path | None = typer.Option(
        None, "--store", help="SQLite run store \\[default: $SAFEEVAL_STORE, else ~/.cache/safeeval/store.sqlite]."
    ),
    data_dir: Path | None = typer.Option(
        None,
        "--data-dir",
        envvar="SAFEEVAL_DATA_DIR",
        help="Folder of local benchmark copies (advbench/, harmbench/, hex_phi/...); else the Hub.",
    ),
    tasks_dir: list[Path] = typer.Option([], "--tasks-dir", help="Extra folder of task YAML specs (repeatable)."),
    judges_dir: list[Path] = typer.Option([], "--judges-dir", help="Extra folder of judge YAML specs (repeatable)."),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", min=1),
    temperature: float = typer.Option(0.0, "--temperature", min=0.0, help="0 is greedy."),
    top_p: float = typer.Option(1.0, "--top-p", min=0.0, max=1.0),
    system_prompt: str | None = typer.Option(None, "--system-prompt", help="A system message put before every prompt."),
    chat_template: str | None = typer.Option(
        None, "--chat-template", help="Jinja chat template (file or text) for models without one."
    ),
    adapter: str | None = typer.Option(None, "--adapter", help="LoRA adapter folder (hf, vllm)."),
    dtype: str | None = typer.Option(
        None,
        "--dtype",
        help="auto, bfloat16, float16 or float32 (hf, vllm) \\[default: auto: float32 checkpoints run in bfloat16].",
    ),
    batch_size: int | None = typer.Option(
        None, "--batch-size", min=1, help="Prompts per batch (hf, default 16) or per saved chunk (vllm, default 256)."
    ),
    tensor_parallel_size: int | None = typer.Option(
        None, "--tensor-parallel", min=1, help="vLLM tensor parallel size \\[default: 1]."
    ),
    data_parallel_size: int | None = typer.Option(
        None, "--data-parallel", min=1, help="vLLM data parallel size \\[default: 1]."
    ),
    enforce_eager: bool = typer.Option(
        False, "--enforce-eager", help="vLLM: skip graph compilation (starts ~4x faster on CPU, runs ~25% slower)."
    ),
    base_url: str | None = typer.Option(
        None,
        "--base-url",
        help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 \\[default: $OPENAI_BASE_URL, else OpenAI's].",
    ),
    api_key_env: str | None = typer.Option(
        None,
        "--api-key-env",
        help="Name of the environment variable holding the endpoint's key (the key itself is never written "
        "anywhere) \\[default: OPENAI_API_KEY].",
    ),
    concurrency: int | None = typer.Option(
        None, "--concurrency", min=1, help="Parallel requests (openai) \\[default: 8]."
    ),
    judge_backend: str | None = typer.Option(
        None, "--judge-backend", help="Backend for model judges (hf, vllm, openai) \\[default: each judge spec's own]."
    ),
    judge_model: list[str] = typer.Option(
        [],
        "--judge-model",
        help="JUDGE=MODEL: the model a model judge runs on, e.g. llama-guard=./LlamaGuard3 (repeatable).",
    ),
    judge_base_url: str | None = typer.Option(
        None, "--judge-base-url", help="OpenAI-compatible endpoint for model judges."
    ),
    judge_api_key_env: str | None = typer.Option(
        None, "--judge-api-key-env", help="Name of the environment variable holding the judge endpoint's key."
    ),
    perplexity_model: str | None = typer.Option(
        None,
        "--perplexity-model",
        help="A reference model for the optional perplexity degeneration signal (a missing one is skipped, and the "
        "skip recorded).",
    ),
    sandbox_allow: list[str] = typer.Option(
        [],
        "--sandbox-allow",
        help="Let the code sandbox run without a protection this system cannot give: network or proc (repeatable; "
        "recorded in results.json). Without it such a system refuses to run code.",
    ),
):
    flags = dict(locals())
    quiet_libraries(ui.VERBOSE)
    with ui.errors():
        result = run_score(config_from_flags(flags))
    print_summary(result)


def config_from_flags(flags: dict) -> ScoreConfig:
    flags = dict(flags)
    renamed = {
        "tasks_dirs": flags.pop("tasks_dir"),
        "judges_dirs": flags.pop("judges_dir"),
        "judge_models": judge_models(flags.pop("judge_model")),
        "enforce_eager": flags["enforce_eager"] or None,
    }
    return ScoreConfig.from_settings({**flags, **renamed, "command": ["safeeval", *sys.argv[1:]]})


def run_score(cfg: ScoreConfig) -> RunResult:
    from ..run import score as run

    return run(cfg, reporter=ui.stage)


def judge_models(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, model = pair.partition("=")
        if not sep or not name or not model:
            raise typer.BadParameter(
                f"'{pair}' is not JUDGE=MODEL, e.g. llama-guard=./LlamaGuard3", param_hint="--judge-model"
            )
        out[name.strip()] = model.strip()
    return out


def _pct(rate) -> str:
    if rate is None or rate.value is None:
        return "-"
    return f"{100 * rate.value:.1f} [{100 * rate.ci_low:.0f}, {100 * rate.ci_high:.0f}]"


def print_summary(result: RunResult) -> None:
    ui.out_console.print(
        f"[bold]{ui.escape(result.model.name)}[/bold] ({result.model.backend}, fingerprint {result.model.fingerprint})",
        highlight=False,
    )
    pairs = [(task, name, block) for task, by in result.metrics.items() for name, block in by.items()]
    _utility_table(result, pairs)
    _safety_table(result, pairs)
    for text in _notes(result, pairs):
        _line(text)
    c = result.counts
    _line(
        f"{c['samples']} samples, {c['generated_now']} generated now, {c['judged_now']} verdicts now, "
        f"{c['truncated']} cut at --max-new-tokens. Results: {result.out}/results.json"
    )


def _utility_table(result: RunResult, pairs: list) -> None:
    rows = [
        [task, name, _pct(result.rate(task, name, "accuracy")), str(b["n"]), str(b["no_answer"])]
        for task, name, b in pairs
        if "accuracy" in b
    ]
    if rows:
        columns = [("task", "left"), ("scorer", "left"), ("accuracy %\n[95% CI]", "right"), ("n", "right")]
        ui.table("utility", [*columns, ("no\nanswer", "right")], rows, "auto")


def _safety_table(result: RunResult, pairs: list) -> None:
    rows = [
        [
            task,
            name,
            _pct(result.rate(task, name, "asr")),
            f"{b['n_judged']}/{b['n_harmful']}",
            str(b["not_judged"]),
            str(b["unparsed"]),
            _pct(result.rate(task, name, "benign_refusal_rate")),
        ]
        for task, name, b in pairs
        if "asr" in b
    ]
    if rows:
        columns = [("task", "left"), ("judge", "left"), ("ASR %\n[95% CI]", "right"), ("judged", "right")]
        columns += [("not\njudged", "right"), ("un-\nparsed", "right"), ("benign\nrefusal %", "right")]
        ui.table("safety", columns, rows, "auto")


def _notes(result: RunResult, pairs: list) -> list[str]:
    """The lines under the tables: corrected ASRs, mean scores, suites, broken output, judge cards, sandbox."""
    notes = []
    for task, name, _ in pairs:
        corrected = result.rate(task, name, "asr_corrected")
        if corrected and corrected.value is not None:
            notes.append(
                f"{task} / {name}: ASR corrected for judge error (Rogan-Gladen, from its validation) "
                f"{_pct(corrected)} %"
            )
        mean = result.rate(task, name, "mean_score")
        if mean and mean.value is not None:
            notes.append(f"{task} / {name}: mean score {mean.value:.2f} [{mean.ci_low:.2f}, {mean.ci_high:.2f}]")
    notes += _suite_lines(result)
    if (degenerate := _degenerate_line(result)) is not None:
        notes.append(degenerate)
    notes += [f"judge {name}: {card_line(card_of(info))}" for name, info in result.judges.items()]
    for name, info in result.scorers.items():  # a protection given up by the user's explicit opt-in
        lost = (info.get("isolation") or {}).get("lost") or {}
        if lost:
            ran = [by.get(name, {}).get("isolation_lost") or {} for by in result.metrics.values()]
            notes.append(
                f"note: {name}'s sandbox ran without "
                + "; ".join(
                    f"{p} isolation ({sum(r.get(p, 0) for r in ran)} programs; allowed by --sandbox-allow {p}): {why}"
                    for p, why in lost.items()
                )
            )
    return notes


def _suite_lines(result: RunResult) -> list[str]:
    """Each suite's average; one that had to leave a benchmark out says so, never silently."""
    lines = []
    for suite_name, suite in result.suites.items():
        for judge, avg in suite["averages"].items():
            value = "-" if avg["value"] is None else f"{100 * avg['value']:.1f}%"
            flag = ""
            if not avg["complete"]:
                why = "".join(f" ({t}: {suite['unavailable'][t]})" for t in avg["missing"] if t in suite["unavailable"])
                flag = f" — INCOMPLETE: averaged without {', '.join(avg['missing'])}{why}"
            lines.append(
                f"suite {suite_name} / {judge}: mean {suite['metric']} {value} over {len(avg['members'])} of "
                f"{len(suite['tasks'])} benchmarks{flag}"
            )
    return lines


def _degenerate_line(result: RunResult) -> str | None:
    """Degenerate responses and shells per task, and the ASR without shells beside each judge's ASR."""
    shares = {
        t: d["degenerate"]["value"] for t, d in result.degeneration.items() if (d.get("degenerate") or {}).get("value")
    }
    shells = {t: (d.get("counts") or {}).get("shell", 0) for t, d in result.degeneration.items()}
    shells = {t: n for t, n in shells.items() if n}
    if not shares and not shells:
        return None
    text = (
        "degenerate responses (empty, repetitive or gibberish; ASR over the coherent ones is asr_coherent in "
        "results.json): " + (", ".join(f"{t} {100 * v:.1f}%" for t, v in shares.items()) or "none")
    )
    if shells:
        parts = []
        for task, n in shells.items():
            total = result.degeneration[task].get("n") or 0
            asrs = [
                f"{name} {_pct(result.rate(task, name, 'asr_without_shells'))}"
                for name in result.metrics.get(task, {})
                if result.rate(task, name, "asr_without_shells")
            ]
            parts.append(f"{task} {n} of {total}" + (f" (ASR without shells: {', '.join(asrs)} %)" if asrs else ""))
        text += (
            "; shells (an affirmative opening and nothing more, counted as failed attacks in "
            "asr_without_shells): " + ", ".join(parts)
        )
    else:
        text += "; no shells"
    return text


def _line(text: str) -> None:
    ui.out_console.print(text, highlight=False, soft_wrap=True, markup=False)
