"""Reading a config file as YAML without letting the file decide how much time or memory it costs.

``yaml.safe_load`` alone trusts the file: a 1 KB "billion laughs" of nested aliases expands to
gigabytes, 500 nested brackets overflow the stack (RecursionError), and a second ``model:``
silently replaces the first. Here the file is capped in size, must be UTF-8, and is composed
by a composer that bounds nesting depth and the expanded size (every alias counts as the
nodes and text it stands for), refuses recursive aliases and names duplicate keys with both
lines. Every failure is a one-line ConfigError (exit 2). libyaml parses when it is there (its
parser does not recurse and is ~4x faster); the composer is always ours.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent
from yaml.nodes import ScalarNode
from yaml.resolver import Resolver

from edge.errors import ConfigError, brief, redact

try:
    from yaml._yaml import CParser as _Parser

    _PURE: tuple[type, ...] = ()
except ImportError:  # PyYAML without libyaml: the pure-Python reader, scanner and parser
    from yaml.parser import Parser as _Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    _PURE = (Reader, Scanner)

MAX_BYTES = 1 << 20  # 1 MiB: the documented config is ~6 KB; a bigger file is the wrong file
MAX_DEPTH = 32  # the deepest real key path (analytics.N.zones.N.polygon.N.N) is 7 levels
MAX_NODES = 10_000  # after alias expansion; a config with many zones has a few hundred
MAX_TEXT = 2 * MAX_BYTES  # characters of scalar text after alias expansion


class _Refused(Exception):
    """A limit was hit while composing; carries the message (the origin is added by the caller)."""


class _Composer(Composer):
    """PyYAML's composer, plus the limits, recursive-alias refusal and duplicate keys."""

    def __init__(self) -> None:
        super().__init__()
        self._depth = 0
        self._nodes = 0
        self._text = 0
        self._weight: dict[int, tuple[int, int]] = {}  # id(anchored node) -> (nodes, text) it expands to

    def _grow(self, nodes: int, text: int, mark) -> None:
        self._nodes += nodes
        self._text += text
        if self._nodes > MAX_NODES or self._text > MAX_TEXT:
            what = f"{MAX_NODES} values" if self._nodes > MAX_NODES else f"{MAX_TEXT} characters of text"
            raise _Refused(f"it expands to more than {what} at line {mark.line + 1} (aliases count as what they "
                           "repeat); a config is far smaller: is this the right file, or an alias bomb?")

    def compose_node(self, parent, index):
        if self.check_event(AliasEvent):
            mark = self.peek_event().start_mark
            node = super().compose_node(parent, index)
            weight = self._weight.get(id(node))
            if weight is None:  # anchored but not finished: the alias sits inside its own anchor
                raise _Refused(f"the alias at line {mark.line + 1} refers to a collection that contains it "
                               "(a recursive structure); a config cannot be recursive")
            self._grow(*weight, mark)
            return node
        event = self.peek_event()
        if self._depth >= MAX_DEPTH:
            raise _Refused(f"it is nested more than {MAX_DEPTH} levels deep at {_where(event.start_mark)}; "
                           "a config needs fewer than 10")
        before = (self._nodes, self._text)
        self._grow(1, len(getattr(event, "value", "") or ""), event.start_mark)
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if event.anchor is not None:
            self._weight[id(node)] = (self._nodes - before[0], self._text - before[1])
        return node

    def compose_mapping_node(self, anchor):
        node = super().compose_mapping_node(anchor)
        seen: dict[tuple[str, str], Any] = {}
        for key, _value in node.value:
            if isinstance(key, ScalarNode):
                here = key.start_mark
                first = seen.setdefault((key.tag, key.value), here)
                if first is not here:
                    raise _Refused(f"the key {brief(key.value)} appears twice in one mapping, at {_where(first)} "
                                   f"and {_where(here)}; the second would silently replace the first: keep one")
        return node


def _where(mark) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


class _Loader(*_PURE, _Composer, _Parser, SafeConstructor, Resolver):  # type: ignore[misc]
    """Our composer first in the MRO, so it (not libyaml's own) builds the nodes from the parser's events."""

    def __init__(self, text: str) -> None:
        for base in _PURE:
            base.__init__(self, text)
        _Parser.__init__(self, *(() if _PURE else (text,)))
        _Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)


def read_text(path: Path) -> str:
    """The file's text: at most MAX_BYTES, UTF-8 (a BOM is allowed)."""
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ConfigError(f"config file {path} is {size / 1e6:.1f} MB; a config file may be at most "
                              f"{MAX_BYTES // 1024} KB: is this the right file?")
        with path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)  # a pipe or /proc file may be bigger than stat said
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; pass an existing file or omit --config") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None
    if len(data) > MAX_BYTES:
        raise ConfigError(f"config file {path} is larger than {MAX_BYTES // 1024} KB: is this the right file?")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(f"config file {path} is not UTF-8 text: byte 0x{data[exc.start]:02x} at line {line}, "
                          f"column {column}; save it as UTF-8") from None


def parse(text: str, origin: str) -> Any:
    """One YAML document from ``text`` as plain Python data, within the limits above."""
    loader = None
    try:
        loader = _Loader(text)  # the pure-Python reader checks every character here already
        return loader.get_single_data()
    except _Refused as exc:
        raise ConfigError(f"config file {origin}: {exc}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = ", ".join(p for p in (exc.context, exc.problem) if p) or "unreadable"
        raise ConfigError(f"config file {origin} is not valid YAML{where}: {redact(problem, 200, 200)}") from None
    except yaml.YAMLError as exc:  # a ReaderError: a character YAML does not allow (NUL, most control codes)
        position = getattr(exc, "position", None)
        where = f" at line {text.count(chr(10), 0, position) + 1}" if isinstance(position, int) else ""
        reason = getattr(exc, "reason", None) or str(exc).splitlines()[0]
        raise ConfigError(f"config file {origin} is not valid YAML{where}: {redact(reason, 200, 200)}") from None
    except (ValueError, TypeError, OverflowError) as exc:  # a scalar PyYAML cannot build: 2001-13-45, a 5000-digit int
        raise ConfigError(f"config file {origin} has a value YAML cannot read: {redact(str(exc), 200, 200)}") from None
    except RecursionError:  # a long chain of << merges; the depth limit stops every other recursion first
        raise ConfigError(f"config file {origin} is nested too deeply (a chain of << merges?); flatten it") from None
    finally:
        if loader is not None:
            loader.dispose()


def load_file(path: str | os.PathLike) -> Any:
    """Read and parse the config file at ``path``."""
    p = Path(path)
    return parse(read_text(p), str(p))
