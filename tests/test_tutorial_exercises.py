"""The tutorial's exercises come with their answers, hidden in collapsible blocks.

A page's ``## Exercises`` section lists numbered exercises, then one ``??? note "Answer N"``
block per exercise, in order, each with an indented body. Every page of the scalar and
vectorized tiers has such a section. Whether the executed answers run and print is checked by
the site build (``tests/test_site_outputs.py``); this file only reads the Markdown, so it is fast.
"""
import re
from pathlib import Path

import pytest

TUTORIAL = Path(__file__).resolve().parents[1] / "tutorial"
PAGES_WITH_EXERCISES = sorted(p for p in TUTORIAL.rglob("*.md")
                              if re.search(r"^## Exercises$", p.read_text(), re.MULTILINE))
TIER_PAGES = sorted((TUTORIAL / "scalar").glob("*.md")) + sorted((TUTORIAL / "vectorized").glob("*.md"))


def exercises_section(page: Path) -> str:
    """The text from ``## Exercises`` to the next ``## `` heading (or the end of the page)."""
    text = page.read_text()
    start = re.search(r"^## Exercises$", text, re.MULTILINE).end()
    following = re.search(r"^## ", text[start:], re.MULTILINE)
    return text[start:start + following.start()] if following else text[start:]


@pytest.mark.parametrize("page", TIER_PAGES, ids=lambda p: str(p.relative_to(TUTORIAL)))
def test_every_tier_page_has_exercises(page):
    assert page in PAGES_WITH_EXERCISES, f"{page.relative_to(TUTORIAL)} has no '## Exercises' section"


@pytest.mark.parametrize("page", PAGES_WITH_EXERCISES, ids=lambda p: str(p.relative_to(TUTORIAL)))
def test_one_hidden_answer_per_exercise(page):
    section = exercises_section(page)
    questions = [int(n) for n in re.findall(r"^(\d+)\. ", section, re.MULTILINE)]
    answers = [int(n) for n in re.findall(r'^\?\?\? note "Answer (\d+)"$', section, re.MULTILINE)]
    assert len(questions) >= 2, "an exercise section needs at least two numbered exercises"
    assert questions == list(range(1, len(questions) + 1)), f"exercises numbered {questions}"
    assert answers == questions, f"answers {answers} for exercises {questions}"
    first_answer = section.index('??? note "Answer 1"')
    assert not re.search(r"^\d+\. ", section[first_answer:], re.MULTILINE), "an exercise follows the answers"


@pytest.mark.parametrize("page", PAGES_WITH_EXERCISES, ids=lambda p: str(p.relative_to(TUTORIAL)))
def test_answers_have_an_indented_body(page):
    blocks = re.split(r'^\?\?\? note "Answer \d+"\n', exercises_section(page), flags=re.MULTILINE)[1:]
    for number, body in enumerate(blocks, start=1):
        lines = [line for line in body.splitlines() if line.strip()]
        assert lines and lines[0].startswith("    "), f"answer {number} is empty or not indented"
        prose = re.sub(r"^    ```.*?^    ```", "", body, flags=re.MULTILINE | re.DOTALL)   # without its code
        assert len(prose.split()) >= 3, f"answer {number} has code but no explanation"
