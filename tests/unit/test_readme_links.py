"""README.md stays a front page (issue 20: at most 200 lines) and every file it points to
is in the repository: relative links and image paths resolve from the README's folder,
as GitHub resolves them. Links inside code are not links and are not checked."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MAX_LINES = 200

#: [text](target) and ![alt](target), the target up to a space or the closing paren
MARKDOWN_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
#: <img src="..."> and <a href="..."> written as HTML
HTML_LINK = re.compile(r"<(?:img|a)\b[^>]*\b(?:src|href)=[\"']([^\"']+)[\"']", re.I)
#: [text]: target, a reference definition
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)


def prose(text: str) -> str:
    """The text outside fenced code blocks and inline code spans."""
    text = re.sub(r"^(```|~~~).*?^\1[^\n]*$", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def local_targets(text: str) -> list[str]:
    """Every link and image target of ``text`` that names a file of the repository
    (not a URL with a scheme, an e-mail or an anchor on the same page)."""
    body = prose(text)
    found = MARKDOWN_LINK.findall(body) + HTML_LINK.findall(body) + REFERENCE.findall(body)
    targets = []
    for target in found:
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith(("#", "//")):
            continue
        targets.append(target.split("#", 1)[0].split("?", 1)[0])
    return targets


def broken(text: str, base: Path) -> list[str]:
    return [t for t in local_targets(text) if not (base / t).exists()]


def test_the_readme_is_at_most_200_lines() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_LINES, f"README.md has {len(lines)} lines; at most {MAX_LINES}"


def test_every_file_the_readme_links_to_exists() -> None:
    text = README.read_text(encoding="utf-8")
    targets = local_targets(text)
    assert any(t.endswith(".png") for t in targets), "the README shows a screenshot"
    assert any(t.startswith("docs/") and t.endswith(".md") for t in targets)
    assert broken(text, ROOT) == []


def test_the_check_sees_broken_links_and_ignores_code_and_urls(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "here.md").write_text("# here\n", encoding="utf-8")
    text = (
        "[ok](docs/here.md#a-heading) ![gone](docs/img/gone.png) [also](<docs/nope.md>)\n"
        '<img src="docs/missing.png" alt=""> [web](https://example.com/x.md) [top](#top)\n'
        "[ref]: docs/absent.md\n"
        "`[code](docs/in-code.md)`\n"
        "```\n[fenced](docs/in-fence.md)\n```\n"
    )
    assert broken(text, tmp_path) == [
        "docs/img/gone.png",
        "docs/nope.md",
        "docs/missing.png",
        "docs/absent.md",
    ]
