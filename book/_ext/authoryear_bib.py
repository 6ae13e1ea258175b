"""Bibliography entries labelled "Author et al., year", like the book's in-text citations.

A local Sphinx extension (`_config.yml`: sphinx.local_extensions) that registers a pybtex
label style and a formatting style, both named "authoryear", sorted by author and year.
"""

from __future__ import annotations

from pybtex.plugin import register_plugin
from pybtex.richtext import Text
from pybtex.style.formatting.plain import Style as PlainStyle
from pybtex.style.labels import BaseLabelStyle


def _last_name(person) -> str:
    return " ".join(Text.from_latex(name).render_as("text") for name in person.last_names)


class AuthorYearLabels(BaseLabelStyle):
    """"Stringer et al., 2019", "Kingma and Ba, 2015", "Krizhevsky, 2009"."""

    def format_labels(self, sorted_entries):
        for entry in sorted_entries:
            people = entry.persons.get("author", [])
            names = [_last_name(p) for p in people[:2]]
            if len(people) > 2:
                who = f"{names[0]} et al."
            else:
                who = " and ".join(names) or entry.fields.get("title", entry.key)
            yield f"{who}, {entry.fields.get('year', 'n.d.')}"


class AuthorYearStyle(PlainStyle):
    default_label_style = "authoryear"
    default_sorting_style = "author_year_title"


def setup(app):
    register_plugin("pybtex.style.labels", "authoryear", AuthorYearLabels)
    register_plugin("pybtex.style.formatting", "authoryear", AuthorYearStyle)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
