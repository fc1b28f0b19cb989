"""The accuracy figures in README.md and docs/MODELS.md are what the `edgepose eval` command beside them prints.

Nothing here copies a figure: the documents are parsed, each command is run through the CLI a user
runs (``python -m edge eval ...``, the same entry point as ``edgepose``), and each figure must be within
TOLERANCE of what the command printed. Two shapes of figure are understood:

* a table whose header has metric columns (``OKS AP``, ``AP50``, ``AP75``, ``PCK@0.05``, ``PCK@0.1``),
  followed directly by a fenced code block with an ``edgepose eval`` line per row; a row belongs to the
  command whose ``--model`` file the row names (a cell ``models/x.tflite`` or ``x``, for ``--model .../x.tflite``);
* prose: ``PCK@0.1 0.668 (`edgepose eval --model ...`)``, a figure belongs to the first inline
  ``edgepose eval`` command after it in the same paragraph.

A metric figure in prose with no command after it, a metric table with no command block under it, a
row that no command names and a command that names no row are failures too, so a figure cannot be
added without its command. Paths in the commands are the documented ones: ``../shared/...`` is the
shared folder of conftest.py (``EDGEPOSE_SHARED``), ``~/.cache/edgepose/models/...`` the BlazePose
files that scripts/fetch_blazepose.py puts in the model cache (the fixture of test_blazepose.py).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pytest

from conftest import ROOT, SHARED, need
from test_blazepose import blazepose_dir  # noqa: F401  (fixture: the BlazePose files in the model cache)

DOCS = ("README.md", "docs/MODELS.md")
METRICS = ("OKS AP", "AP50", "AP75", "PCK@0.05", "PCK@0.1")
TOLERANCE = 0.005  # inclusive; the docs give 3 decimals, as the command prints them
CACHE_PREFIX = "~/.cache/edgepose/models/"
SHARED_PREFIX = "../shared/"

_METRIC = r"(OKS AP|AP50|AP75|PCK@0\.05|PCK@0\.1)"
PROSE_FIGURE = re.compile(r"(?<![\w@.])" + _METRIC + r"\s+\**(\d\.\d{3})\b")
INLINE_EVAL = re.compile(r"`(edgepose eval [^`]+)`")
PRINTED = re.compile(_METRIC + r" (\d+\.\d+)")


@dataclass(frozen=True)
class Figure:
    where: str  # "docs/MODELS.md:17"
    metric: str
    value: float
    command: tuple[str, ...]  # the arguments after `edgepose`, as documented


def _eval_args(text: str) -> tuple[str, ...] | None:
    """`... && edgepose eval --model X --data Y   # note` -> ("eval", "--model", "X", "--data", "Y")."""
    m = re.search(r"\bedgepose (eval\b.*)", text)
    return tuple(shlex.split(m.group(1), comments=True)) if m else None


def _model_arg(args: tuple[str, ...]) -> str:
    return args[args.index("--model") + 1] if "--model" in args else ""


def _blocks(lines: list[str]):
    """Yield (kind, first line number, lines) for "code", "table" and "para" blocks of a Markdown file."""
    i, n = 0, len(lines)
    while i < n:
        line = lines[i].strip()
        if line.startswith(("```", "~~~")):
            fence, start = line[:3], i
            i += 1
            while i < n and not lines[i].strip().startswith(fence):
                i += 1
            yield "code", start + 1, lines[start + 1:i]
            i += 1
        elif line.startswith("|"):
            start = i
            while i < n and lines[i].strip().startswith("|"):
                i += 1
            yield "table", start + 1, [s.strip() for s in lines[start:i]]
        elif not line or line.startswith("#"):
            i += 1
        else:
            start = i
            i += 1
            while i < n and lines[i].strip() and not lines[i].strip().startswith(("```", "~~~", "|", "#", "- ")):
                i += 1
            yield "para", start + 1, lines[start:i]


def _cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip().strip("|").split("|")]


def _row_names(cells: list[str]) -> set[str]:
    """The file names a table row gives: `models/x.tflite` -> x.tflite and x; a bare cell `x` -> x."""
    names = set()
    for cell in cells:
        for token in re.findall(r"`([^`]+)`", cell) or [cell]:
            base = token.strip().rsplit("/", 1)[-1]
            names |= {base, base.rsplit(".", 1)[0]} if "." in base else {base}
    return names


def parse(doc: str) -> tuple[list[Figure], list[str]]:
    """The figures of one document with their commands, and what is wrong with the document's figures."""
    lines = (ROOT / doc).read_text(encoding="utf-8").splitlines()
    figures: list[Figure] = []
    problems: list[str] = []
    blocks = list(_blocks(lines))
    for k, (kind, start, body) in enumerate(blocks):
        if kind == "table":
            header = _cells(body[0])
            columns = {j: h for j, h in enumerate(header) if h in METRICS}
            mentions = any(m in h for h in header for m in METRICS)
            if not mentions:
                continue
            after = blocks[k + 1] if k + 1 < len(blocks) else None
            # the command block must follow the table directly (only blank lines between)
            if after is None or after[0] != "code" or any(s.strip() for s in lines[start - 1 + len(body):after[1] - 1]):
                problems.append(f"{doc}:{start}: a table of accuracy figures with no command block right under it")
                continue
            if not columns:  # figures from another command (edgepose models quantize): it must be there
                if not any(re.search(r"\bedgepose \w", s) for s in after[2]):
                    problems.append(f"{doc}:{start}: the code block under this table runs no edgepose command")
                continue
            commands = [a for a in map(_eval_args, after[2]) if a]
            used: set[tuple[str, ...]] = set()
            for r, row in enumerate(body[2:], start=start + 2):
                cells = _cells(row)
                names = _row_names(cells)
                mine = [a for a in commands if Path(_model_arg(a)).name in names or Path(_model_arg(a)).stem in names]
                if len(mine) != 1:
                    problems.append(f"{doc}:{r}: {len(mine)} edgepose eval commands under the table name "
                                    "this row's model (one must)")
                    continue
                used.add(mine[0])
                for j, metric in columns.items():
                    value = re.sub(r"[*_ ]", "", cells[j])
                    if not re.fullmatch(r"\d\.\d+", value):
                        problems.append(f"{doc}:{r}: {metric} cell {cells[j]!r} is not a figure")
                        continue
                    figures.append(Figure(f"{doc}:{r}", metric, float(value), mine[0]))
            problems += [f"{doc}:{after[1]}: command names no row of the table above: edgepose {' '.join(a)}"
                         for a in commands if a not in used]
        elif kind == "para":
            text = "\n".join(s.strip() for s in body)
            evals = [(m.start(), _eval_args(m.group(1))) for m in INLINE_EVAL.finditer(text)]
            for f in PROSE_FIGURE.finditer(text):
                where = f"{doc}:{start + text.count(chr(10), 0, f.start())}"
                after_it = [a for pos, a in evals if pos > f.end()]
                if not after_it:
                    problems.append(f"{where}: {f.group(1)} {f.group(2)} has no `edgepose eval ...` command after it")
                    continue
                figures.append(Figure(where, f.group(1), float(f.group(2)), after_it[0]))
    return figures, problems


PARSED = {doc: parse(doc) for doc in DOCS}
FIGURES = [f for doc in DOCS for f in PARSED[doc][0]]
COMMANDS = sorted({f.command for f in FIGURES})


def test_every_accuracy_figure_has_its_command_beside_it():
    problems = [p for doc in DOCS for p in PARSED[doc][1]]
    assert not problems, "\n".join(problems)
    for doc in DOCS:  # the parser still understands each document (a reformatted table would vanish)
        assert PARSED[doc][0], f"no accuracy figure with its command found in {doc}"


def test_parser_reads_a_table_and_a_claim(tmp_path, monkeypatch):
    """The parser binds table rows and prose figures to their commands, and reports figures without one."""
    doc = tmp_path / "doc.md"
    doc.write_text(
        "| model | file | AP50 | PCK@0.1 |\n|---|---|---|---|\n"
        "| A | `models/a.tflite` | 0.5 | **0.25** |\n| B | `b.onnx` + more | 0.125 | 0.75 |\n\n"
        "```bash\nedgepose eval --model models/a.tflite --data d\n"
        "python3 x.py && edgepose eval --model ../shared/b.onnx --data d   # note\n```\n\n"
        "It scores PCK@0.1 0.333 (`edgepose eval --model default --data d`), against\n"
        "PCK@0.05 0.444 for the other (`edgepose eval --model c --data d`).\n\n"
        "An orphan: OKS AP 0.999 and nothing to run.\n",
        encoding="utf-8",
    )
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    figures, problems = parse("doc.md")
    got = {(f.metric, f.value, _model_arg(f.command)) for f in figures}
    assert got == {("AP50", 0.5, "models/a.tflite"), ("PCK@0.1", 0.25, "models/a.tflite"),
                   ("AP50", 0.125, "../shared/b.onnx"), ("PCK@0.1", 0.75, "../shared/b.onnx"),
                   ("PCK@0.1", 0.333, "default"), ("PCK@0.05", 0.444, "c")}
    assert len(problems) == 1 and "OKS AP 0.999" in problems[0], problems


def _resolve(args: tuple[str, ...], request) -> tuple[list[str], dict[str, str]]:
    """The documented arguments with ../shared and the model cache where they are on this machine."""
    out, env = [], dict(os.environ)
    for a in args:
        if a.startswith(SHARED_PREFIX):
            request.getfixturevalue("shared")
            a = str(SHARED / a[len(SHARED_PREFIX):])
            need(Path(a).exists(), a)
        elif a.startswith(CACHE_PREFIX):
            cache = request.getfixturevalue("blazepose_dir")
            env["EDGEPOSE_MODELS"] = str(cache)
            a = str(cache / a[len(CACHE_PREFIX):])
            need(Path(a).exists(), f"{a} (python3 scripts/fetch_blazepose.py)")
        out.append(a)
    if _model_arg(args) == "default":
        request.getfixturevalue("shipped_movenet")
    return out, env


@lru_cache(maxsize=None)
def _printed(args: tuple[str, ...], env_items: tuple[tuple[str, str], ...]) -> dict[str, float]:
    proc = subprocess.run([sys.executable, "-m", "edge", *args], cwd=ROOT, env=dict(env_items),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"edgepose {' '.join(args)} failed:\n{proc.stderr[-2000:]}"
    summary = [s for s in proc.stdout.splitlines() if s.startswith("OKS AP")]
    assert len(summary) == 1, proc.stdout
    return {m: float(v) for m, v in PRINTED.findall(summary[0])}


@pytest.mark.parametrize("command", COMMANDS, ids=[_model_arg(c).rsplit("/", 1)[-1] for c in COMMANDS])
def test_figures_are_what_the_command_prints(command, request):
    args, env = _resolve(command, request)
    printed = _printed(tuple(args), tuple(sorted(env.items())))
    wrong = [f"{f.where}: {f.metric} {f.value:.3f} in the docs, the command prints {printed[f.metric]:.3f}"
             for f in FIGURES if f.command == command and abs(f.value - printed[f.metric]) > TOLERANCE + 1e-9]
    assert not wrong, f"edgepose {' '.join(command)}\n" + "\n".join(wrong)
