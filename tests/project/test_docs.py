"""The design is in the repository: every section the code cites exists in docs/ARCHITECTURE.md."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("runtime", "export", "plugins", "tests", "benchmarks", "containers", "scripts")


def sources():
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix in {".py", ".sh", ".md"} and path.is_file() and ".venv" not in path.parts:
                yield path


def test_cited_sections_exist():
    headings = set(re.findall(r"^## (\d+)\. ", (ROOT / "docs" / "ARCHITECTURE.md").read_text(), re.M))
    cited = {(str(p.relative_to(ROOT)), n) for p in sources()
             for n in re.findall(r"ARCHITECTURE\.md §(\d+)", p.read_text(errors="replace"))}
    assert cited, "nothing cites docs/ARCHITECTURE.md"
    assert not [c for c in cited if c[1] not in headings], sorted(c for c in cited if c[1] not in headings)


def test_no_citation_of_a_document_outside_the_repository():
    design = "DESIGN" + " §"  # spelled apart so that this file does not match itself
    stale = [str(p.relative_to(ROOT)) for p in sources() if design in p.read_text(errors="replace")]
    assert not stale, stale
