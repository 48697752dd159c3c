"""Command-line words that are not text in the locale's encoding: both programs echo them
on stderr byte for byte, whatever the locale and Python's I/O settings.

Ours runs as a real ``python3 -m conntrack_tools.conntrack`` process here (the interpreter
decodes argv and reads ``LC_ALL``, ``PYTHONIOENCODING``, ``PYTHONUTF8`` itself); the
reference runs once per command line (its output does not depend on those variables).
"""
from __future__ import annotations

import functools
import os

import pytest

from harness import assert_same

LINES = {
    "address": ["-L", "-s", b"\xff\xfe10.0.0.1"],
    "utf-8 address": ["-L", "-s", "é10.0.0.1".encode()],
    "protocol": ["-L", "-p", b"\xfftcp"],
    "output": ["-L", "-o", b"xml,\xff"],
    "label": ["-L", "-l", b"w\xffb"],
    "long option": [b"--\xff"],
    "short option": [b"-\xff"],
    "family": ["-L", "-f", b"ipv\xff"],
    "table": ["-L", b"\xff\xfe"],
}
ENVIRONMENTS = {
    "C locale": {"LC_ALL": "C"},
    "C.UTF-8 locale": {"LC_ALL": "C.UTF-8"},
    "no UTF-8 mode": {"LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"},
    "UTF-8 mode": {"PYTHONUTF8": "1"},
    "ascii I/O": {"PYTHONIOENCODING": "ascii"},
    "latin-1 I/O": {"PYTHONIOENCODING": "latin-1"},
    "strict I/O": {"PYTHONIOENCODING": "utf-8:strict"},
}


def _args(line: list) -> list[str]:
    return [os.fsdecode(w) if isinstance(w, bytes) else w for w in line]


@functools.lru_cache(maxsize=None)
def _reference(runner, name: str):
    return runner.run("ref", _args(LINES[name]))


@pytest.mark.parametrize("name", LINES)
def test_words_echoed_byte_for_byte(module_ns, name: str) -> None:
    _, runner = module_ns
    ref = _reference(runner, name)
    ours = runner.run("ours", _args(LINES[name]), exec_ours=True)
    assert ref.status != 0 and (b"\xff" in ref.err or b"\xc3\xa9" in ref.err)
    assert_same(ref, ours)


@pytest.mark.parametrize("env", ENVIRONMENTS)
@pytest.mark.parametrize("name", ["address", "utf-8 address", "long option"])
def test_whatever_the_locale(module_ns, name: str, env: str) -> None:
    _, runner = module_ns
    ref = _reference(runner, name)
    ours = runner.run("ours", _args(LINES[name]), env=ENVIRONMENTS[env], exec_ours=True)
    assert_same(ref, ours)
