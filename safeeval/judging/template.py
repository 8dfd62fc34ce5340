"""TemplateJudge: a model judge whose prompt is a grading template holding the request and the response, sent as
one user turn; `rubric`, `strongreject` and `refusal-llm` build on it.

Templates. A spec gives `template` (inline) or `template_file` (a path; `$VAR`/`${VAR}` and `~` are expanded; a
relative path is looked up in the --judges-dir folders, then in safeeval's own judges/ folder, then in the current
folder), and `format`, how the template is filled:
  jinja   (default) `{{ instruction }}`, `{{ response }}`, `{{ instruction_tag }}`, `{{ response_tag }}`
  percent Python `template % (instruction, response)`: exactly two %s slots (Qi et al.'s templates)
  format  Python `template.format(...)` with the fields of jinja, plus `prompt`, `forbidden_prompt` and `goal` as
          other names for the instruction (StrongREJECT's templates use {prompt} or {forbidden_prompt})
Other papers' templates are prose under their own licences and are not shipped: a variant such as `rubric:qi2023`
reads the user's copy from the file an environment variable names (see judges/rubric.yaml).

Hard to fool. A response is grading material, so it must not be able to steer the parse:
  * the tags the judge answers with (`#thescore`, `#thereason`, ...) and the block delimiters (`<response`,
    `</response`, `<instruction`, `</instruction`) are broken inside the request and the response with a zero-width
    space (case-insensitively), so they cannot appear verbatim in the prompt: the response cannot close its block
    or forge an answer line that survives the judge quoting it;
  * our templates put the response between `<response-H>` and `</response-H>`, H the first 12 hex digits of the
    sha256 of the (neutralized) response itself: deterministic, so cached generations stay valid, and a response
    cannot contain its own hash;
  * the parser drops whatever the judge quotes between a matching pair of such tags, reads answer tags only at the
    start of a line (after optional whitespace, a markdown heading or bullet, and emphasis), so a score quoted inline
    or in a `>` block quote is ignored, and takes the LAST answer line: a judge that quotes an injected
    "#thescore: 1" and then gives its own score is read as its own score. An output whose only score lies inside
    a quoted response block has no score: unparsed, never a guess.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import string
from pathlib import Path

import jinja2

from ..backends.base import Prompt
from ..data import Sample
from ..errors import SafeevalError
from ..registry import builtin_dir
from .model import ModelJudge, neutralize

FORMATS = ("jinja", "percent", "format")
INSTRUCTION_ALIASES = ("instruction", "prompt", "forbidden_prompt", "goal")
FIELDS = (*INSTRUCTION_ALIASES, "response", "instruction_tag", "response_tag")
TAG_DIGITS = 12
DELIMITERS = ("<response", "</response", "<instruction", "</instruction")
_JINJA = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
_QUOTED = re.compile(rf"<(response|instruction)-([0-9a-f]{{{TAG_DIGITS}}})>.*?</\1-\2>", re.DOTALL | re.IGNORECASE)
# Where an answer line may start: indentation, an optional markdown heading or bullet, optional emphasis.
LINE_START = r"^[ \t]*(?:\#{1,6}[ \t]+|[-+][ \t]+)?[*_`]*[ \t]*"
_ENV_VAR = re.compile(r"\$\{?(\w+)\}?")


def delimiter(kind: str, text: str) -> str:
    """The tag name that wraps `text` in the prompt: derived from the text, so stable and unguessable by it."""
    return f"{kind}-{hashlib.sha256(text.encode('utf-8')).hexdigest()[:TAG_DIGITS]}"


def strip_quoted(output: str) -> str:
    """The judge's output without anything it quoted between a matching pair of our delimiter tags."""
    return _QUOTED.sub(" ", output)


def read_int(text: str, low: int, high: int, what: str, next_line: bool = False) -> int:
    """The whole number that `text` starts with, on its first line (after spaces and markdown emphasis), checked
    against [low, high]. With next_line, a number alone on the following line also counts (`#thescore:` then `4`)."""
    m = re.match(r"[ \t*_`]*(\d+)(\.\d+)?(?!\d)([^\n]*)", text)
    if not m and next_line:
        m = re.match(r"[ \t*_`]*\n[ \t*_`]*(\d+)(\.\d+)?(?!\d)([^\n]*)", text)
        if m and not re.fullmatch(r"[ \t*_`.]*(?:/\s*5)?[ \t*_`.]*", m.group(3)):
            m = None
    if not m:
        raise ValueError(f"{what}: no number in {text.strip()[:40]!r}")
    value, fraction, after = int(m.group(1)), m.group(2), m.group(3)
    if fraction and int(fraction[1:]) != 0:
        raise ValueError(f"{what}: {m.group(1)}{fraction} is not a whole number")
    if re.match(r"[ \t*_`]*(?:-|–|—|to\b|or\b|and\b)\s*\d", after):
        raise ValueError(f"{what}: ambiguous answer {text.strip()[:40]!r}")
    if not low <= value <= high:
        raise ValueError(f"{what}: {value} is outside {low}..{high}")
    return value


def _resolve(file: str, runtime, name: str, url: str | None) -> Path:
    unset = [v for v in _ENV_VAR.findall(file) if not os.environ.get(v)]
    expanded = os.path.expandvars(os.path.expanduser(file))
    if unset:
        where = f" Get it from {url}." if url else ""
        raise SafeevalError(
            f"Judge {name} reads its prompt template from the file named by the environment variable "
            f"{unset[0]}, which is not set (or empty): set {unset[0]} to the path of your copy.{where}"
        )
    path = Path(expanded)
    if path.is_absolute():
        candidates = [path]
    else:
        candidates = [Path(d) / path for d in getattr(runtime, "dirs", None) or []]
        candidates += [builtin_dir("judges") / path, Path.cwd() / path]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise SafeevalError(f"Judge {name}: template file {file} not found (looked in {', '.join(map(str, candidates))}).")


class TemplateJudge(ModelJudge):
    """A ModelJudge whose prompt is a template filled with the request and the response, sent as one user turn."""

    answer_markers: tuple[str, ...] = ()  # the tags this judge answers with; broken inside requests and responses

    def __init__(self, name: str, config: dict, backend, runtime):
        self.format = config.get("format") or "jinja"
        if self.format not in FORMATS:
            raise SafeevalError(
                f"Judge {name}: unknown template format '{self.format}'. Valid formats: {', '.join(FORMATS)}."
            )
        self.template, self.template_source = self._load(name, config, runtime)
        self._compiled = None
        self._check(name)
        super().__init__(name, config, backend, runtime)
        self.info.update(
            {
                "template": self.template_source,
                "format": self.format,
                "template_sha256": hashlib.sha256(self.template.encode("utf-8")).hexdigest()[:16],
            }
        )

    # -- template --------------------------------------------------------------------------------------
    @staticmethod
    def _load(name: str, config: dict, runtime) -> tuple[str, str]:
        inline, file = config.get("template"), config.get("template_file")
        if inline and file:
            raise SafeevalError(f"Judge {name}: give 'template' or 'template_file', not both.")
        if inline:
            return str(inline), "inline"
        if not file:
            raise SafeevalError(f"Judge {name} needs a prompt template: set 'template' or 'template_file'.")
        path = _resolve(str(file), runtime, name, config.get("url"))
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SafeevalError(f"Judge {name}: cannot read template file {path}: {exc}.") from None
        if not text.strip():
            raise SafeevalError(f"Judge {name}: template file {path} is empty.")
        return text, path.name

    def _check(self, name: str) -> None:
        """Fill the template once with placeholders, so a broken template stops the run before any generation."""
        problem = None
        if self.format == "percent":
            try:
                self.template % ("i", "r")
            except (TypeError, ValueError) as exc:
                problem = f"the percent format needs exactly two %s slots (instruction, response): {exc}"
        elif self.format == "format":
            try:
                names = {
                    f.split(".")[0].split("[")[0]
                    for _, f, _, _ in string.Formatter().parse(self.template)
                    if f is not None
                }
            except ValueError as exc:
                problem = f"not a valid str.format template: {exc}"
            else:
                unknown = sorted(names - set(FIELDS))
                if unknown or "" in names:
                    problem = f"unknown fields {unknown or ['{}']}; valid fields: {', '.join(FIELDS)}"
        else:
            try:
                self._compiled = _JINJA.from_string(self.template)
                self._compiled.render(**self._values("i", "r"))
            except jinja2.TemplateError as exc:
                problem = f"{exc} (variables: {', '.join(FIELDS)})"
        if problem:
            raise SafeevalError(f"Judge {name}: template {self.template_source}: {problem}.")

    def _values(self, instruction: str, response: str) -> dict:
        values = {alias: instruction for alias in INSTRUCTION_ALIASES}
        values.update(
            response=response,
            instruction_tag=delimiter("instruction", instruction),
            response_tag=delimiter("response", response),
        )
        return values

    def special_markers(self) -> list[str]:
        """The tokenizer's special tokens, including added ones such as chat-turn markers, which transformers 5
        leaves out of all_special_tokens (e.g. `<|assistant|>` when only bos/eos/pad are named)."""
        markers = super().special_markers()
        tokenizer = getattr(self.backend, "tokenizer", None)
        added = getattr(tokenizer, "added_tokens_decoder", None) or {}
        return [*markers, *(t.content for t in added.values() if getattr(t, "special", False))]

    def protected_markers(self) -> list[str]:
        return [*DELIMITERS, *self.answer_markers]

    def render_text(self, instruction: str, response: str) -> str:
        instruction = neutralize(instruction, self.protected_markers())
        response = neutralize(response, self.protected_markers())
        if self.format == "percent":
            return self.template % (instruction, response)
        values = self._values(instruction, response)
        if self.format == "format":
            return self.template.format_map(values)
        return self._compiled.render(**values)

    # -- ModelJudge ------------------------------------------------------------------------------------
    def prompt_extra(self) -> dict:
        """Anything else that shapes a verdict (a threshold): part of the fingerprint."""
        return {}

    def prompt_format(self) -> str:
        return json.dumps(
            {
                "format": self.format,
                "template": self.template,
                "protected": self.protected_markers(),
                "tag_digits": TAG_DIGITS,
                **self.prompt_extra(),
            },
            sort_keys=True,
        )

    def build(self, sample: Sample, response: str) -> Prompt:
        return [{"role": "user", "content": self.render_text(sample.prompt, response)}]
