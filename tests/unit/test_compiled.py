"""The generated tables are current and the schema matches the kernel's header.

``python -m nfnl.compile --check`` regenerates the ``_compiled.py`` modules of every schema
module (nfnl's headers and those of the ``nfnl.compile`` entry points) and must find them
current; every generated file of the tree must have its schema module among the targets;
the compiled tables must equal what the declarations give; and every ``CTA_*`` /
``IPCTNL_MSG_*`` constant of ``<linux/netfilter/nfnetlink_conntrack.h>`` (the installed
header and the copy captured with the test data) must have the same number in the
schema.
"""
from __future__ import annotations

import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from ctnetlink import _compiled as CC
from ctnetlink import constants as K
from ctnetlink import schema as S
from nfnl import _compiled as NC
from nfnl import compile as compiler
from nfnl import headers as H
from nfnl.attrs import attr_tables, leaf_layout, struct_fields

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_HEADER = Path("/usr/include/linux/netfilter/nfnetlink_conntrack.h")
HEADER_COPY = Path(__file__).resolve().parent / "data" / "kernel_nfnetlink_conntrack.h"


def test_compile_check_finds_the_generated_modules_current() -> None:
    r = subprocess.run([sys.executable, "-m", "nfnl.compile", "--check"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""


def generated_files() -> dict[Path, str]:
    """Every generated module of the tree: {path: the schema module its header names}."""
    out = {}
    for top in ("nfnl", "ctnetlink", "tools"):
        for p in (ROOT / top).rglob("*.py"):
            head = p.read_text().split("\n", 1)[0]
            if head.startswith(compiler.MARKER):
                out[p] = head[len(compiler.MARKER):].split(";")[0]
    return out


def test_every_generated_file_is_a_target_and_current() -> None:
    """--check covers every generated file: each names its schema module, which is a
    target of ``python -m nfnl.compile`` (nfnl's own or an ``nfnl.compile`` entry point)
    and renders exactly the committed file at exactly that place."""
    found = generated_files()
    assert {ROOT / "nfnl" / "_compiled.py", ROOT / "ctnetlink" / "_compiled.py"} <= set(found)
    targets = compiler.targets()
    for path, module in found.items():
        assert module in targets, f"{path}: {module} is not an nfnl.compile entry point"
        where, text = compiler.render(module)
        assert where == path, module
        assert path.read_text() == text, path
    assert len(targets) == len(set(found.values())), "a target without a generated file"


def test_check_reports_a_stale_module_and_writes_nothing(monkeypatch, capsys) -> None:
    real = compiler.render

    def stale(name: str):
        path, text = real(name)
        return path, text + ("# changed\n" if name == "ctnetlink.schema" else "")

    monkeypatch.setattr(compiler, "render", stale)
    before = (ROOT / "ctnetlink" / "_compiled.py").read_text()
    assert compiler.main(["--check"]) == 1
    assert "ctnetlink.schema" in capsys.readouterr().err
    assert compiler.main(["--check", "nfnl.headers"]) == 0  # only the modules named
    assert (ROOT / "ctnetlink" / "_compiled.py").read_text() == before


def test_a_module_without_compiled_tables_is_refused() -> None:
    with pytest.raises(TypeError, match="not a schema module"):
        compiler.render("nfnl.attrs")


def test_compiled_tables_follow_the_declarations() -> None:
    assert CC.ATTRS == attr_tables(*S.ROOTS)
    assert CC.MESSAGES == {t: (n, aset.name) for t, (n, aset) in S.MESSAGES.items()}
    assert CC.STRUCTS == struct_fields(*S.ROOTS) == {
        "ctattr_protoinfo_tcp": {4: ("flags", "mask"), 5: ("flags", "mask")}}
    assert CC.BODY_NAMES["ctattr_type"] == "CTA"
    assert set(CC.BODY_NAMES) == {r.name for r in S.ROOTS}
    for aset in (a for root in S.ROOTS for a in root.walk()):
        for attr in aset:
            row = CC.ATTRS[aset.name][attr.type]
            assert row[0] == attr.name
            if attr.nested:
                assert row[1:] == ("nested", None, attr.payload.name)
            else:
                assert row[1:3] == leaf_layout(attr.payload)


def test_header_formats() -> None:
    assert struct.calcsize(NC.NLMSGHDR_FMT) == H.NlMsgHdr.sizeof() == 16
    assert struct.calcsize(NC.NFGENMSG_FMT) == H.NfGenMsg.sizeof() == 4
    assert struct.calcsize(NC.NLMSGERR_FMT) == H.NlMsgErr.sizeof() == 20
    raw = bytes(range(16))
    assert struct.unpack(NC.NLMSGHDR_FMT, raw) == tuple(
        v for k, v in H.NlMsgHdr.parse(raw).items() if not k.startswith("_"))
    raw = bytes((10, 0, 1, 2))
    assert struct.unpack(NC.NFGENMSG_FMT, raw) == (10, 0, 0x0102)


def parse_enums(text: str) -> dict[str, dict[str, int]]:
    """{enum name: {constant: value}} of a C header (implicit numbering, aliases)."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    out = {}
    for name, body in re.findall(r"enum\s+(\w+)\s*\{(.*?)\};", text, flags=re.S):
        values: dict[str, int] = {}
        nxt = 0
        for line in body.splitlines():
            line = line.strip().rstrip(",")
            if not line or line.startswith("#"):
                continue
            const, _, expr = (p.strip() for p in line.partition("="))
            value = (values[expr] if expr in values else int(expr, 0)) if expr else nxt
            values[const] = value
            nxt = value + 1
        out[name] = {k: v for k, v in values.items()
                     if not k.startswith("__") and not k.endswith("_UNSPEC")}
    return out


@pytest.mark.parametrize("header", [SYSTEM_HEADER, HEADER_COPY], ids=["system", "copy"])
def test_schema_numbers_match_the_kernel_header(header: Path) -> None:
    assert header.exists(), header
    enums = parse_enums(header.read_text())
    sets = {a.name: a for root in S.ROOTS for a in root.walk()}
    checked = 0
    for enum, consts in enums.items():
        if enum in ("cntl_msg_types", "ctnl_exp_msg_types"):
            sub = 1 if enum == "cntl_msg_types" else 2
            for const, value in consts.items():
                if not const.endswith("_MAX"):
                    assert getattr(K, const) == (sub << 8) | value, const
                    checked += 1
            continue
        if enum == "ctattr_natseq":  # the old names of ctattr_seqadj
            continue
        assert enum in sets, f"no attribute set for enum {enum}"
        by_name = sets[enum].by_name
        for const, value in consts.items():
            if const in ("CTA_NAT_SEQ_ADJ_ORIG", "CTA_NAT_SEQ_ADJ_REPLY"):
                continue  # aliases of CTA_SEQ_ADJ_*
            assert const in by_name, f"{enum}: {const} missing from the schema"
            assert by_name[const].type == value, const
            checked += 1
    assert checked >= 128


def test_schema_extensions_beyond_the_header_are_the_known_ones() -> None:
    """Attributes newer than the installed header: CTA_TIMESTAMP_EVENT (Linux 6.x)."""
    enums = parse_enums(HEADER_COPY.read_text())
    extra = {(a.name, attr.name) for root in S.ROOTS for a in root.walk() for attr in a
             if attr.name not in enums.get(a.name, {})}
    assert extra <= {("ctattr_type", "CTA_TIMESTAMP_EVENT")}
