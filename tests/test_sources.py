"""The repository carries its sources: nothing reads or links outside the clone, and the published numbers it
cites (docs/sources.md) say which version of a changing source they come from."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from retrieval.tables.spec import load_published

REPO = Path(__file__).resolve().parents[1]
SOURCES = REPO / "docs" / "sources.md"
# how a file would reach the folder beside the clone, or the machine it was written on
OUTSIDE = re.compile(r"\.\./shared\b|/work/shared\b|parents?\b[^\n]{0,40}\"shared\"")


def tracked_text_files() -> list[Path]:
    try:
        listed = subprocess.run(["git", "-C", str(REPO), "ls-files"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.fail("the repository's files are listed with git ls-files: run the tests from a git checkout")
    return [REPO / name for name in listed.stdout.splitlines()
            if name.endswith((".py", ".md", ".yaml", ".yml", ".sh", ".ipynb", ".toml", ".cfg", ".txt"))]


def test_no_code_test_command_or_link_reaches_outside_the_clone():
    offenders = [f"{path.relative_to(REPO)}:{number}: {line.strip()}"
                 for path in tracked_text_files() if path.is_file()
                 for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
                 if OUTSIDE.search(line) and path != Path(__file__)]
    assert not offenders, "files that read or link outside the repository:\n" + "\n".join(offenders)


def numbers_after(text: str, label: str, count: int) -> list[float]:
    """The ``count`` numbers that follow ``label`` in ``text``."""
    start = text.index(label) + len(label)
    return [float(v) for v in re.findall(r"\d+\.\d+", text[start:])[:count]]


def test_the_model_zoo_numbers_come_from_the_readme_version_they_name():
    text = " ".join(SOURCES.read_text().split())
    history = text[text.index("History of Source A"):text.index("Source B")]
    current = text[text.index("Source A:"):text.index("History of Source A")]
    # docs/sources.md names the commits where the README's numbers changed
    assert "3da005b3bf12ff03d526eed7f74c6e55e1ec85cd" in current and "180bffc8fa460ecfa877d02612541335e46c4012" in \
        history
    old = numbers_after(history, "ResNet-101 AP GeM ", 6)
    new = numbers_after(current, "| ResNet-101, AP, GeM |", 6)
    assert old == [89.3, 93.0, 67.4, 42.8, 80.4, 61.0] and new == [89.1, 93.0, 67.1, 42.3, 80.3, 60.9]
    sources, entries = load_published(REPO / "experiments" / "listwise_ap" / "published.yaml")
    assert "3da005b" in sources["A"]  # the version the transcribed numbers come from
    zoo = entries["zoo_resnet101_ap_gem"].values
    assert [zoo[k] for k in ("roxford5k/medium/map", "roxford5k/hard/map", "rparis6k/medium/map",
                             "rparis6k/hard/map")] == new[2:]
