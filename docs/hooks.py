"""mkdocs hook: pages that document result schemas are filled in from the code at build time.

A page marks the place with an HTML comment; the hook replaces it with the Markdown the
package renders from its declared pyarrow schemas, so the documentation cannot drift
from what the code writes.

- ``<!-- schemas -->``: the run table (training record plus sweep columns) and the
  boundary table (``ntk_dist.study.results.describe_schemas``).
- ``<!-- reference-columns -->``: the columns of an experiment's ``reference.parquet``
  (``ntk_dist.study.reference.REFERENCE_DOCS``).
"""

from __future__ import annotations

SCHEMAS = "<!-- schemas -->"
REFERENCE = "<!-- reference-columns -->"


def reference_columns() -> str:
    """A Markdown table of the experiment reference columns and their meaning."""
    from ntk_dist.study.reference import REFERENCE_DOCS

    lines = ["| column | meaning |", "| --- | --- |"]
    lines += [f"| `{name}` | {doc} |" for name, doc in REFERENCE_DOCS.items()]
    return "\n".join(lines)


def on_page_markdown(markdown: str, **kwargs) -> str:
    if SCHEMAS in markdown:
        from ntk_dist.study.results import describe_schemas

        markdown = markdown.replace(SCHEMAS, describe_schemas())
    if REFERENCE in markdown:
        markdown = markdown.replace(REFERENCE, reference_columns())
    return markdown
