"""The kernel (kernel/) is the one home of the values every stage shares: a test fails when one
of them is written again as a literal in our code or SQL, and when the kernel imports anything
of ours."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from kernel import glucose, sequence, units

ROOT = Path(__file__).resolve().parent.parent
OURS = ("bench", "care", "dashboard", "devices", "glucover", "ingest", "kernel", "pricing",
        "records")
# The spellings a copy of each value would take (the kernel's value, its neighbours).
COPIES = {
    "MGDL_PER_MMOL": r"18\.0156",
    "SEQ_MODULO": r"(?<![\d_.])(65536|65535|32767|32768|2 ?\*\* ?16)(?![\d_])",
    "ACK_WINDOW": r"(?<![\d_.])(32768|32767)(?![\d_])",
    "LEGACY_ACK_WINDOW": r"(?<![\d_.])(4096|4095)(?![\d_])",
    "ERROR_STATUS_MASK": r"(?<![\d_.])4094(?![\d_])",
    "FINGERSTICK_RANGE_MMOL": r"between 3\.9 and 10\.0|>= ?3\.9\b|<= ?10\.0\b",
}
# Places that may spell a value for another reason, with the reason.
ALLOWED = {
    ("bench/loadgen.py", "SEQ_MODULO"): "a socket read size in bytes",
}


def _sources() -> list[Path]:
    files = [p for pkg in OURS for p in (ROOT / pkg).rglob("*")
             if p.suffix in (".py", ".sql") and "kernel" not in p.relative_to(ROOT).parts[:1]]
    return sorted(files)


def _code_lines(path: Path) -> list[tuple[int, str]]:
    """Lines of code, comments and docstrings left out (they may name a value to explain it)."""
    text = path.read_text()
    if path.suffix == ".sql":
        return [(i, line.split("--")[0]) for i, line in enumerate(text.splitlines(), 1)]
    docstrings: set[int] = set()
    for node in ast.walk(ast.parse(text)):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(
                body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            docstrings.update(range(body[0].lineno, (body[0].end_lineno or 0) + 1))
    return [(i, line.split("#")[0]) for i, line in enumerate(text.splitlines(), 1)
            if i not in docstrings]


def test_no_kernel_value_is_written_again() -> None:
    found = []
    for path in _sources():
        rel = str(path.relative_to(ROOT))
        for number, line in _code_lines(path):
            for name, pattern in COPIES.items():
                if (rel, name) not in ALLOWED and re.search(pattern, line):
                    found.append(f"{rel}:{number}: {name}: {line.strip()}")
    assert not found, "a kernel value written as a literal:\n" + "\n".join(found)


def test_the_patterns_match_the_kernel_values() -> None:
    assert re.search(COPIES["MGDL_PER_MMOL"], repr(units.MGDL_PER_MMOL))
    assert re.search(COPIES["SEQ_MODULO"], str(sequence.SEQ_MODULO))
    assert re.search(COPIES["ACK_WINDOW"], str(sequence.ACK_WINDOW))
    assert re.search(COPIES["LEGACY_ACK_WINDOW"], str(sequence.LEGACY_ACK_WINDOW))
    assert re.search(COPIES["ERROR_STATUS_MASK"], str(glucose.ERROR_STATUS_MASK))
    low, high = glucose.FINGERSTICK_RANGE_MMOL
    assert re.search(COPIES["FINGERSTICK_RANGE_MMOL"], f"between {low} and {high}")


def test_the_check_catches_a_copy(tmp_path: Path) -> None:
    copy = tmp_path / "copy.py"
    copy.write_text('"""Doc 18.0156."""\nX = 5.5 * 18.0156  # mg/dL\nY = 1  # 65536\n')
    lines = _code_lines(copy)
    assert [n for n, line in lines if re.search(COPIES["MGDL_PER_MMOL"], line)] == [2]
    assert not [n for n, line in lines if re.search(COPIES["SEQ_MODULO"], line)]


def test_the_kernel_imports_nothing_of_ours() -> None:
    for path in (ROOT / "kernel").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert node.module.split(".")[0] in ("kernel", "__future__") or \
                    node.module.split(".")[0] not in OURS, (path.name, node.module)
            if isinstance(node, ast.Import):
                assert all(a.name.split(".")[0] not in OURS or a.name.startswith("kernel")
                           for a in node.names), path.name
