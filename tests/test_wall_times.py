"""One command, one stated cost: no two places give a make target wall times that disagree by more
than rounding ("about 5 min" and "304 s" agree; "56 min" and "18 min" do not). A stated cost is
any duration in the target's `make help` line, or an "about <duration>" in the sentence after a
`make <target>` on a page; dated records (the presets table's stage times) are not costs."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from conftest import ROOT

UNITS = {"s": 1, "sec": 1, "seconds": 1, "second": 1, "min": 60, "minutes": 60, "minute": 60, "h": 3600,
         "hours": 3600, "hour": 3600}
DURATION = re.compile(r"(\d+(?:\.\d+)?)\s?(seconds|second|sec|minutes|minute|min|hours|hour|s|h)\b")
ABOUT = re.compile(r"about (\d+(?:\.\d+)?)\s?(seconds|second|sec|minutes|minute|min|hours|hour|s|h)\b", re.I)
MENTION = re.compile(r"make ([a-z0-9][a-z0-9-]*)")
HELP = re.compile(r"^([a-zA-Z0-9_-]+):.*## (.*)$", re.M)
ROUNDING = 1.3  # "about 5 min" for 304 s, "about 15 seconds" for 13 s


def stated(text: str, where: str) -> dict[str, list[tuple[float, str]]]:
    """target -> (seconds, where) for each duration in the sentence after a `make <target>`."""
    found: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for match in MENTION.finditer(text):
        rest = text[match.end():]
        sentence = re.split(r"(?<![0-9])\.(?:\s|$)|\n\n|make [a-z]", rest, maxsplit=1)[0]
        for n, unit in ABOUT.findall(sentence):
            found[match[1]].append((float(n) * UNITS[unit], where))
    return found


def all_statements(root: Path = ROOT) -> dict[str, list[tuple[float, str]]]:
    found: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for target, help_text in HELP.findall((root / "Makefile").read_text()):
        for n, unit in DURATION.findall(help_text):
            found[target].append((float(n) * UNITS[unit], "make help"))
    for page in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        for target, items in stated(page.read_text(), str(page.relative_to(root))).items():
            found[target] += items
    return found


def disagreements(found: dict[str, list[tuple[float, str]]]) -> list[str]:
    out = []
    for target, items in sorted(found.items()):
        low, high = min(items), max(items)
        if high[0] > ROUNDING * low[0]:
            out.append(f"make {target}: {low[0]:g} s ({low[1]}) vs {high[0]:g} s ({high[1]})")
    return out


def test_no_two_places_state_different_wall_times_for_one_command():
    assert disagreements(all_statements()) == []


def test_a_disagreement_is_found():
    found = stated("Run `make reproduce-lenet5` (about 18 min on 2 cores; 56 min before). Then make test "
                   "(about 5 min).", "README")
    found["reproduce-lenet5"].append((56 * 60, "make help"))
    assert disagreements(found) == ["make reproduce-lenet5: 1080 s (README) vs 3360 s (make help)"]
    assert found["test"] == [(300.0, "README")]
