"""The documentation stays true to the code: generated schema pages, every public name
on the API page, the theory sections docstrings cite, a short README whose links resolve.
(`make test` also builds the site with `mkdocs build --strict`.)"""

import importlib.util
import re
from pathlib import Path

import ntk_dist

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_schema_page_is_generated_from_the_declared_schemas():
    from ntk_dist.study.reference import REFERENCE_DOCS
    from ntk_dist.study.results import describe_schemas

    hooks = _hooks()
    page = (DOCS / "schemas.md").read_text()
    assert hooks.SCHEMAS in page and hooks.REFERENCE in page
    out = hooks.on_page_markdown(page)
    assert hooks.SCHEMAS not in out and hooks.REFERENCE not in out
    assert describe_schemas() in out
    assert all(f"| `{name}` | {doc} |" in out for name, doc in REFERENCE_DOCS.items())


def test_api_page_names_every_public_name():
    api = (DOCS / "api.md").read_text()
    assert [n for n in ntk_dist.__all__ if f"`{n}`" not in api] == []


def test_theory_page_has_the_numbered_sections_docstrings_cite():
    theory = (DOCS / "theory.md").read_text()
    numbers = re.findall(r"^## §(\d) ", theory, flags=re.M)
    assert numbers == [str(i) for i in range(1, 8)]


def test_readme_is_short_has_the_two_commands_and_its_links_resolve():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    assert "make demo" in readme and "make test" in readme
    links = re.findall(r"\]\(([^)#:]+)\)", readme)
    assert links and [link for link in links if not (ROOT / link).exists()] == []
