"""Data files as people publish them: the shapes safeeval reads (declared in the spec), valid edge files read with
exact row counts, and every reader fuzzed with malformed files: one sentence or the right rows, never a traceback
and never a row dropped without a word.

Readers: safeeval.data.read_rows (csv, tsv, json, jsonl, each optionally .gz, and tarballs of JSON files) serves
tasks, training sets and training files; the Hub path with `field` goes through datasets' JSON loader; labelled
sets for judge validation through data.read_json.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from safeeval import data, labels, registry
from safeeval.errors import SafeevalError
from safeeval.train.sets import load_set

BIG = 10 * 2**20  # "a single 10 MB line"
FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
TRIED = {"files": 0}  # files read by this module, for the record (printed with -s)


def spec(filename: str, prompt: str = "{{ prompt }}", id_: str = "mine-{{ index }}", **local) -> registry.Spec:
    body = {"name": "mine", "local": {"path": filename, **local}, "prompt": prompt, "id": id_}
    return registry.Spec("mine", Path("mine.yaml"), body)


def load(folder: Path, filename: str, content: bytes, **kwargs) -> list[data.Sample]:
    (folder / filename).write_bytes(content)
    TRIED["files"] += 1
    return data.load(spec(filename, **kwargs), None, folder).samples


def rows_csv(rows: list[dict], delimiter: str = ",", terminator: str = "\n", quoting: int = csv.QUOTE_MINIMAL) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(
        buf, fieldnames=list(rows[0]), delimiter=delimiter, lineterminator=terminator, quoting=quoting
    )
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def gzipped(body: bytes) -> bytes:
    # mtime=0: the bytes (and so the parametrized test ids) are the same in every xdist worker
    return gzip.compress(body, mtime=0)


def tarball(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, body in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return gzipped(buf.getvalue())


# --- the shapes people publish, declared in the spec -----------------------------------------------------


@pytest.mark.parametrize("key", ["instructions", "data"])
def test_an_object_holding_the_rows_is_read_with_field(tmp_path, key):
    body = json.dumps({"version": 2, key: [{"prompt": "one"}, {"prompt": "two"}], "notes": []}).encode()
    got = load(tmp_path, "rows.json", body, field=key)
    assert [s.prompt for s in got] == ["one", "two"] and [s.id for s in got] == ["mine-0", "mine-1"]
    with pytest.raises(
        SafeevalError,
        match=rf"rows.json is a JSON object \(keys: version, {key}, notes\), not a list "
        rf"of rows; name the key holding them with `field: {key}` next to `path`",
    ):
        load(tmp_path, "rows.json", body)
    with pytest.raises(SafeevalError, match=r"has no key 'rows' at its top level \(found: keys version"):
        load(tmp_path, "rows.json", body, field="rows")


def test_plain_strings_become_rows_of_one_column(tmp_path):
    strings = ["Write a poem.", "Summarise this.", "Write a poem."]  # the same text twice is two rows
    got = load(tmp_path, "list.json", json.dumps(strings).encode(), prompt="{{ text }}")
    assert [s.prompt for s in got] == strings
    got = load(
        tmp_path,
        "list.json",
        json.dumps({"instructions": strings}).encode(),
        prompt="{{ instruction }}",
        field="instructions",
        column="instruction",
    )
    assert [s.prompt for s in got] == strings
    lines = "".join(json.dumps(x) + "\n" for x in strings).encode()
    assert [s.prompt for s in load(tmp_path, "list.jsonl", lines, prompt="{{ text }}")] == strings


@pytest.mark.parametrize(
    "name,body,message",
    [
        ("mixed.json", [{"prompt": "a"}, "b"], r"mixed.json row 2 is a string, not an object like the rows before it"),
        ("mixed.jsonl", '{"prompt": "a"}\n[1]\n', r"mixed.jsonl line 2 is a list, not an object"),
        ("numbers.json", [1, 2], r"numbers.json row 1 is a number, not an object"),
        ("nulls.jsonl", "null\n", r"nulls.jsonl line 1 is null, not an object"),
        ("scalar.json", 42, r"scalar.json holds a number, not a list of rows"),
        ("text.json", "rows", r"text.json holds a string, not a list of rows"),
    ],
)
def test_any_other_shape_is_one_sentence_naming_the_file_and_the_shape(tmp_path, name, body, message):
    raw = body.encode() if isinstance(body, str) and name.endswith(".jsonl") else json.dumps(body).encode()
    with pytest.raises(SafeevalError, match=message):
        load(tmp_path, name, raw)


def test_field_in_the_hub_block_reaches_datasets_json_loader(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf")
    path = tmp_path / "rows.json"
    path.write_text(json.dumps({"instructions": [{"prompt": "one"}, {"prompt": "two"}], "count": 2}))
    hub = {"dataset": "json", "data_files": str(path), "split": "train", "field": "instructions"}
    body = {"name": "mine", "hub": hub, "prompt": "{{ prompt }}"}
    got = data.load(registry.Spec("mine", Path("mine.yaml"), body), None, None)
    assert [s.prompt for s in got.samples] == ["one", "two"]


def test_training_files_are_read_by_the_same_reader(tmp_path):
    rows = [{"instruction": "Add", "input": "1 and 1", "output": "2"}, {"prompt": "2+2?", "response": "4"}]
    jsonl = "".join(json.dumps(r) + "\r\n" for r in rows).encode()
    for name, body in (
        ("t.json", json.dumps(rows)),
        ("t.jsonl.gz", gzipped(jsonl)),
        ("t.csv", "\ufeff" + rows_csv([{"prompt": "2+2?", "response": "4"}] * 2, terminator="\r\n")),
    ):
        path = tmp_path / name
        path.write_bytes(body if isinstance(body, bytes) else body.encode())
        TRIED["files"] += 1
        assert len(load_set(str(path), "task", None).examples) == 2, name
    path = tmp_path / "wrapped.json"
    path.write_text(json.dumps({"data": rows}))
    with pytest.raises(SafeevalError, match=r"wrapped.json is a JSON object \(keys: data\).*`field: data`"):
        load_set(str(path), "task", None)
    path.write_text(json.dumps(["just text"]))
    with pytest.raises(SafeevalError, match=r"missing its fields.*found: text"):
        load_set(str(path), "task", None)
    path.write_text(json.dumps([{"id": "a", **rows[1]}, {"id": "a", **rows[1]}]))
    with pytest.raises(SafeevalError, match="id 'a' appears twice"):
        load_set(str(path), "task", None)


@pytest.mark.parametrize(
    "body,message",
    [
        (b"", "is not valid JSON"),
        (b"\xff\xfe{}", "is not UTF-8 text"),
        (b"[]", "holds a list"),
        (b'{"b1": "x"}', "an object with other values"),
        (
            b'{"b1": [{"test_case": "t", "generation": "g", "human_0": "maybe"}]}',
            "has label 'maybe' in column 'human_0'",
        ),
    ],
)
def test_a_malformed_labelled_set_is_one_sentence(tmp_path, body, message):
    path = tmp_path / "labels.json"
    path.write_bytes(body)
    spec, split = labels.resolve("harmbench-val", [])
    with pytest.raises(SafeevalError, match=message):
        labels.load(spec, split, None, path)


# --- valid edge files, exact row counts --------------------------------------------------------------------

TRICKY = [
    {"id": "1", "prompt": "a, b"},
    {"id": "2", "prompt": "line one\r\nline two"},
    {"id": "3", "prompt": 'say "hi"'},
]


@pytest.mark.parametrize(
    "name,content",
    [
        ("bom-crlf.csv", ("\ufeff" + rows_csv(TRICKY, terminator="\r\n")).encode()),
        ("lf.csv", rows_csv(TRICKY).encode()),
        ("quoted.tsv", rows_csv(TRICKY, delimiter="\t", terminator="\r\n").encode()),
        ("gzipped.csv.gz", gzipped(("\ufeff" + rows_csv(TRICKY, terminator="\r\n")).encode())),
        ("blank-lines.csv", rows_csv(TRICKY).replace('"a, b"\n', '"a, b"\n\n\n').encode()),
        ("bom-crlf.jsonl", ("\ufeff" + "".join(json.dumps(r) + "\r\n" for r in TRICKY) + "\r\n").encode()),
        ("gzipped.jsonl.gz", gzipped("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in TRICKY).encode())),
        ("bom.json", ("\ufeff" + json.dumps(TRICKY, indent=2).replace("\n", "\r\n")).encode()),
    ],
)
def test_valid_edge_files_read_exactly(tmp_path, name, content):
    got = load(tmp_path, name, content, id_="{{ id }}")
    assert [(s.id, s.prompt) for s in got] == [(r["id"], r["prompt"]) for r in TRICKY]


def test_unicode_line_separators_inside_a_jsonl_string_are_not_line_breaks(tmp_path):
    rows = [{"prompt": "a\u2028b"}, {"prompt": "c\x85d\u2029"}, {"prompt": "e\x1cf"}]
    got = load(tmp_path, "seps.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode())
    assert [s.prompt for s in got] == [r["prompt"] for r in rows]


def test_glue_tsv_without_quoting_keeps_bare_quotes(tmp_path):
    body = 'sentence\tlabel\nit \'s a "great film\t1\n" hello\t0\n'
    got = load(tmp_path, "dev.tsv", body.encode(), prompt="{{ sentence }}", quoting="none")
    assert [s.prompt for s in got] == ["it 's a \"great film", '" hello']


def test_a_tarball_of_json_files_reads_matching_members_in_order(tmp_path):
    body = tarball(
        {
            "test/b/2.json": b'{"prompt": "two"}',
            "test/a/1.json": b'{"prompt": "one"}',
            "README.md": b"not a problem",
            "test/c/3.json": b'[{"prompt": "three"}, {"prompt": "four"}]',
        }
    )
    got = load(tmp_path, "math.tar.gz", body, member="test/*/*.json")
    assert [s.prompt for s in got] == ["one", "two", "three", "four"]


@pytest.mark.parametrize("name", ["big.csv", "big.tsv", "big.jsonl", "big.json", "big.jsonl.gz"])
def test_a_single_10_mb_line_is_one_row(tmp_path, name):
    text = "x" * BIG
    rows = [{"prompt": text}]
    kind = name.split(".")[1]
    body = {
        "csv": rows_csv(rows),
        "tsv": rows_csv(rows, delimiter="\t"),
        "jsonl": json.dumps(rows[0]) + "\n",
        "json": json.dumps(rows),
    }[kind].encode()
    got = load(tmp_path, name, gzipped(body) if name.endswith(".gz") else body)
    assert len(got) == 1 and len(got[0].prompt) == BIG


@pytest.mark.parametrize(
    "value,shown", [(42, "42"), (4.5, "4.5"), (True, "True"), ([1, 2], "[1, 2]"), ({"a": 1}, "{'a': 1}")]
)
def test_non_string_prompts_are_rendered_not_dropped(tmp_path, value, shown):
    body = json.dumps({"prompt": "ok"}) + "\n" + json.dumps({"prompt": value}) + "\n"
    got = load(tmp_path, "typed.jsonl", body.encode())
    assert [s.prompt for s in got] == ["ok", shown]


# --- malformed files: one sentence each --------------------------------------------------------------------


def _valid(kind: str) -> bytes:
    rows = [{"id": str(i), "prompt": f'prompt {i}, "quoted"\nnext line'} for i in range(4)]
    return {
        "csv": rows_csv(rows),
        "tsv": rows_csv(rows, delimiter="\t"),
        "json": json.dumps(rows, indent=1),
        "jsonl": "".join(json.dumps(r) + "\n" for r in rows),
    }[kind].encode()


MALFORMED = {
    "empty": lambda kind: b"",
    "bom only": lambda kind: b"\xef\xbb\xbf",
    "whitespace only": lambda kind: b" \r\n\r\n\t\n",
    "non-UTF-8": lambda kind: _valid(kind).replace(b"prompt 2", "prompt café".encode("latin-1")),
    "UTF-16": lambda kind: _valid(kind).decode().encode("utf-16"),
    "truncated in a quoted field": lambda kind: _valid(kind)[: _valid(kind).index(b"quoted") + 2],
    "truncated in the last row": lambda kind: _valid(kind)[: _valid(kind).index(b"prompt 3") + 3],
    "duplicate ids": lambda kind: (
        _valid(kind).replace(b'"3"', b'"1"').replace(b"\n3,", b"\n1,").replace(b"\n3\t", b"\n1\t")
    ),
    "10 MB of garbage on one line": lambda kind: b'{[",' + b'\x01garbage"' * (BIG // 10),
    "header only": lambda kind: b"id,prompt\r\n" if kind == "csv" else (b"id\tprompt\n" if kind == "tsv" else b"[]"),
    "ragged rows": lambda kind: b"id,prompt\n1,a\n2,b,extra\n" if kind == "csv" else b"id\tprompt\n1\ta\n2\n",
    "duplicate header": lambda kind: b"id,id,prompt\n1,2,a\n" if kind == "csv" else b"id\tid\tprompt\n1\t2\ta\n",
    "deeply nested": lambda kind: b"[" * 100_000 + b"]" * 100_000,
}


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("kind", ["csv", "tsv", "json", "jsonl"])
@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_files_are_one_sentence(tmp_path, kind, case, gz):
    body = MALFORMED[case](kind)
    name = f"bad.{kind}" + (".gz" if gz else "")
    with pytest.raises(SafeevalError) as caught:
        load(tmp_path, name, gzipped(body) if gz else body, id_="{{ id }}")
    message = str(caught.value)
    assert "bad." in message and "\n" not in message and len(message) < 600, message


@pytest.mark.parametrize(
    "body,message",
    [
        (b"", "could not be read"),
        (b"\x1f\x8b\x08\x00garbage", "could not be read"),
        (tarball({"a/1.json": b'{"prompt": "one"}'})[:40], "could not be read"),
        (tarball({"a/1.json": b'{"prompt": "on'}), r"math.tar.gz:a/1.json is not valid JSON"),
        (tarball({"a/1.json": '{"prompt": "café"}'.encode("latin-1")}), r"math.tar.gz:a/1.json is not UTF-8 text"),
        (tarball({"a/1.json": b"7"}), r"math.tar.gz:a/1.json item 1 is a number"),
        (tarball({"a/1.txt": b"{}"}), "holds no rows"),
    ],
)
def test_malformed_tarballs_are_one_sentence(tmp_path, body, message):
    with pytest.raises(SafeevalError, match=message):
        load(tmp_path, "math.tar.gz", body)


@pytest.mark.parametrize(
    "name,body",
    [
        ("bad.csv.gz", gzipped(_valid("csv"))[:-12]),
        ("bad.jsonl.gz", b"\x1f\x8b garbage"),
        ("rows.parquet", b"PAR1"),
        ("folder.csv", None),
    ],
)
def test_unreadable_or_unknown_files_are_one_sentence(tmp_path, name, body):
    if body is None:
        (tmp_path / name).mkdir()
    else:
        (tmp_path / name).write_bytes(body)
    with pytest.raises(SafeevalError, match=r"could not be read|unknown file format 'parquet'"):
        data.load(spec(name), None, tmp_path)


# --- fuzzing -----------------------------------------------------------------------------------------------

# Any text a cell may hold: quotes, separators, line breaks of every kind, a BOM, NUL, non-ASCII.
CELL = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"])
    | st.sampled_from(['"', ",", "\t", "\r", "\n", "\ufeff", "\x00", "\u2028", "\x85", " "]),
    max_size=40,
)
LAYOUT = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["csv", "tsv", "json", "jsonl"]),
        "gz": st.booleans(),
        "bom": st.booleans(),
        "crlf": st.booleans(),
    }
)


def encode(prompts: list[str], layout: dict) -> tuple[str, bytes]:
    rows = [{"id": str(i), "prompt": p} for i, p in enumerate(prompts)]
    end = "\r\n" if layout["crlf"] else "\n"
    kind = layout["kind"]
    if kind in ("csv", "tsv"):
        # Python's writer leaves a lone \r unquoted when the line terminator is \n, which makes the file ambiguous
        # (RFC 4180 quotes it): with \n endings, quote every field.
        text = rows_csv(
            rows,
            delimiter="\t" if kind == "tsv" else ",",
            terminator=end,
            quoting=csv.QUOTE_MINIMAL if layout["crlf"] else csv.QUOTE_ALL,
        )
    elif kind == "jsonl":
        text = "".join(json.dumps(r, ensure_ascii=False) + end for r in rows)
    else:
        text = json.dumps(rows, ensure_ascii=False, indent=1).replace("\n", end)
    body = (("\ufeff" if layout["bom"] else "") + text).encode()
    return f"f.{kind}" + (".gz" if layout["gz"] else ""), gzipped(body) if layout["gz"] else body


@FUZZ
@given(prompts=st.lists(CELL, min_size=1, max_size=8), layout=LAYOUT)
def test_fuzz_every_valid_file_reads_back_every_row_exactly(tmp_path, prompts, layout):
    name, body = encode(prompts, layout)
    got = load(tmp_path, name, body, id_="{{ id }}")
    assert [(s.id, s.prompt) for s in got] == [(str(i), p) for i, p in enumerate(prompts)]


MUTATION = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(st.just("flip"), st.floats(0, 1), st.integers(0, 255)),
    st.tuples(st.just("insert"), st.floats(0, 1), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), st.floats(0, 1), st.integers(1, 16)),
)


def mutate(body: bytes, how: tuple) -> bytes:
    at = int(how[1] * len(body))
    if how[0] == "truncate":
        return body[:at]
    if how[0] == "flip":
        return body[:at] + bytes([how[2]]) + body[at + 1 :]
    if how[0] == "insert":
        return body[:at] + how[2] + body[at:]
    return body[:at] + body[at + how[2] :]


@FUZZ
@given(
    prompts=st.lists(CELL, min_size=1, max_size=6),
    layout=LAYOUT | st.just({"kind": "tar"}),
    mutations=st.lists(MUTATION, min_size=1, max_size=3),
)
def test_fuzz_malformed_files_never_raise_anything_but_one_sentence(tmp_path, prompts, layout, mutations):
    if layout["kind"] == "tar":
        name, body = (
            "f.tar.gz",
            tarball({f"t/{i}.json": json.dumps({"id": str(i), "prompt": p}).encode() for i, p in enumerate(prompts)}),
        )
    else:
        name, body = encode(prompts, layout)
    for how in mutations:
        body = mutate(body, how)
    try:
        got = load(tmp_path, name, body, id_="{{ id }}")
    except SafeevalError:
        return  # the sentence's wording is checked above; here: nothing but SafeevalError escapes
    assert all(isinstance(s.prompt, str) for s in got) and len({s.id for s in got}) == len(got)


def test_zz_how_many_files_were_tried():
    """Runs last in this module (pytest keeps file order): the count for the record."""
    print(f"\ndata files read by test_data_files.py: {TRIED['files']}")
    assert TRIED["files"] > 300
