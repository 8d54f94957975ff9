"""The load-test report: one self-contained HTML page, the summary as JSON, one CSV per table and the records as CSV.

The page has inline CSS and inline SVG charts (``svg_charts``) only: no script, no external URL, so it opens from a
file, an artifact store or a mail attachment alike. It renders a generic document and knows nothing of metrics::

    {"title": str, "subtitle": str, "command": str, "config": dict, "notes": [str],
     "tables": [{"title": str, "columns": [str], "rows": [[str | int | float | None, ...]], "note": str}],
     "charts": [{"title": str, "kind": "line" | "distribution" | "bar", "x_label": str, "y_label": str,
                 "log_y": bool, "log_x": bool, "note": str,
                 "series": {name: {"x": [...], "y": [...]}}     # line
                        or {name: [values]}                       # distribution
                        or {name: {category: value}}}]}           # bar

Every key is optional. Every text from the document is HTML-escaped. Sections, in order: header (title, subtitle,
generation time in UTC, contents), notes, tables, charts, command, config.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cachesvc.loadtests import svg_charts
from cachesvc.loadtests.svg_charts import esc

MISSING = "–"  # an en dash: what a table shows for None and NaN
RESERVED_SLUGS = frozenset({"requests"})  # requests.csv holds the records
NUM = ' class="num"'

CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #f5f6f8; color: #1f2328; font: 15px/1.5
       system-ui, -apple-system, "Segoe UI", Roboto, "Liberation Sans", "DejaVu Sans", Arial, sans-serif; }
header, main { max-width: 1240px; margin: 0 auto; padding: 0 24px; }
header { padding-top: 28px; padding-bottom: 4px; }
h1 { font-size: 26px; line-height: 1.25; margin: 0 0 4px; overflow-wrap: anywhere; }
h2 { font-size: 19px; margin: 32px 0 12px; padding-bottom: 4px; border-bottom: 1px solid #d8dbe0; }
h3 { font-size: 16px; margin: 0 0 8px; overflow-wrap: anywhere; }
.subtitle { margin: 0; color: #4b5259; font-size: 16px; overflow-wrap: anywhere; }
.generated { margin: 6px 0 0; color: #6a737d; font-size: 13px; }
nav.contents { margin: 14px 0 0; font-size: 13px; color: #4b5259; }
nav.contents a { color: #0b5cad; text-decoration: none; margin-right: 14px; white-space: nowrap; }
nav.contents a:hover { text-decoration: underline; }
.notes p { margin: 8px 0; white-space: pre-line; max-width: 90ch; overflow-wrap: anywhere; }
.card { background: #fff; border: 1px solid #e1e4e8; border-radius: 6px; padding: 14px 16px; margin: 0 0 16px; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; font-size: 13.5px; font-variant-numeric: tabular-nums; }
th, td { padding: 5px 12px; border-bottom: 1px solid #eaecef; text-align: left; vertical-align: top; }
th { background: #f0f2f5; font-weight: 600; border-bottom: 1px solid #d0d4d9; }
td { white-space: nowrap; }
th.num, td.num { text-align: right; }
td.missing { color: #8b949e; }
tbody tr:nth-child(even) { background: #fafbfc; }
tbody tr:hover { background: #f1f6fd; }
.note { margin: 8px 0 0; color: #4b5259; font-size: 13px; max-width: 110ch; }
.csv { margin: 6px 0 0; color: #6a737d; font-size: 12px; }
.empty { color: #6a737d; font-style: italic; margin: 0; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 16px; }
figure { margin: 0; background: #fff; border: 1px solid #e1e4e8; border-radius: 6px; padding: 8px; }
figure svg { display: block; width: 100%; height: auto; }
figcaption { color: #4b5259; font-size: 13px; padding: 4px 8px 2px; }
pre { margin: 0; padding: 12px 14px; background: #fff; border: 1px solid #e1e4e8; border-radius: 6px;
      overflow-x: auto; white-space: pre-wrap; overflow-wrap: anywhere;
      font: 13px/1.45 ui-monospace, "SFMono-Regular", "DejaVu Sans Mono", "Liberation Mono", Menlo, monospace; }
details summary { cursor: pointer; margin: 0 0 8px; color: #0b5cad; }
footer { max-width: 1240px; margin: 32px auto 24px; padding: 0 24px; color: #8b949e; font-size: 12px; }
@media print {
  body { background: #fff; }
  .card, figure, pre { border-color: #ccc; break-inside: avoid; }
  nav.contents { display: none; }
}
"""


# --- values ----------------------------------------------------------------------------------------------------------


def format_cell(value: Any) -> str:
    """A table cell's text: 3 significant digits below 1,000, thousands separators above, None/NaN as a dash."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return MISSING
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        if value == 0:
            return "0"
        size = abs(value)
        if size >= 999.5:
            return f"{value:,.0f}"
        if size < 1e-4:
            mantissa, _, exponent = f"{value:.3g}".partition("e")
            return f"{mantissa}e{int(exponent)}" if exponent else mantissa
        text = f"{value:#.3g}"  # keeps the trailing zeros of 3 significant digits (20.0, 0.500)
        return text[:-1] if text.endswith(".") else text
    if isinstance(value, str):
        return value
    if isinstance(value, (Mapping, list, tuple)):
        return json.dumps(json_safe(value), ensure_ascii=False)
    if hasattr(value, "__float__"):  # numpy scalars and the like
        plain = json_safe(value)
        return format_cell(math.nan if plain is None else plain)
    return str(value)


def json_safe(value: Any) -> Any:
    """The value as plain JSON data: NaN and infinities as None, tuples and sets as lists, keys as strings."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(v) for v in value]
    if hasattr(value, "__index__"):  # numpy integers
        return int(value)
    if hasattr(value, "__float__"):  # numpy floats
        return json_safe(float(value))
    return str(value)


def _csv_value(value: Any) -> str:
    """A CSV field: full precision, empty for None and NaN, JSON for lists and dicts, true/false for booleans."""
    value = json_safe(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def flatten(record: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A record's nested dicts as ``a.b`` keys (an empty dict stays one value), so each field gets a CSV column."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def slugify(title: str) -> str:
    """A file-name-safe, lower-case slug of a title (``"Latency (ms)"`` -> ``"latency-ms"``); ``table`` if empty."""
    slug = re.sub(r"[^a-z0-9]+", "-", str(title).lower()).strip("-")[:60].strip("-")
    return slug or "table"


def table_slugs(tables: Sequence[Mapping[str, Any]]) -> list[str]:
    """Each table's unique slug, in order: its CSV's name; repeats get ``-2``, ``-3``, and ``requests`` is kept."""
    slugs: list[str] = []
    for table in tables:
        base = slugify(str(table.get("title", "")))
        if base in RESERVED_SLUGS:
            base += "-table"
        slug, n = base, 1
        while slug in slugs:
            n += 1
            slug = f"{base}-{n}"
        slugs.append(slug)
    return slugs


def _tables(summary: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    tables = summary.get("tables")
    return [t for t in tables if isinstance(t, Mapping)] if isinstance(tables, Sequence) else []


def _charts(summary: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    charts = summary.get("charts")
    return [c for c in charts if isinstance(c, Mapping)] if isinstance(charts, Sequence) else []


def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value] if isinstance(value, Iterable) else [str(value)]


def _rows(table: Mapping[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """A table's columns and rows, rows padded with None to the columns' width (longer rows widen the header)."""
    columns = _strings(table.get("columns"))
    raw = table.get("rows")
    rows = [list(r) if isinstance(r, Sequence) and not isinstance(r, str) else [r]
            for r in (raw if isinstance(raw, Sequence) and not isinstance(raw, str) else [])]
    width = max([len(columns), *map(len, rows)])
    columns += [""] * (width - len(columns))
    return columns, [r + [None] * (width - len(r)) for r in rows]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# --- the page --------------------------------------------------------------------------------------------------------


def render_chart(chart: Mapping[str, Any]) -> str:
    """One chart document as an inline SVG; an unknown kind or malformed series draws a chart saying so."""
    title = str(chart.get("title", ""))
    kind = chart.get("kind")
    series = chart.get("series")
    if not isinstance(series, Mapping):
        series = {}
    x_label, y_label = str(chart.get("x_label", "")), str(chart.get("y_label", ""))
    log_x, log_y = bool(chart.get("log_x")), bool(chart.get("log_y"))
    try:
        if kind == "line":
            return svg_charts.line_chart(title, series, x_label=x_label, y_label=y_label, log_y=log_y)
        if kind == "distribution":
            return svg_charts.distribution_chart(title, series, x_label=x_label, y_label=y_label, log_x=log_x)
        if kind == "bar":
            return svg_charts.bar_chart(title, series, x_label=x_label, y_label=y_label, log_y=log_y)
    except (TypeError, ValueError, KeyError, AttributeError, ArithmeticError) as error:  # malformed series
        return svg_charts.empty_chart(title, f"could not draw this chart ({type(error).__name__})")
    return svg_charts.empty_chart(title, f"unknown chart kind {kind!r}")


def _table_html(table: Mapping[str, Any], slug: str) -> str:
    columns, rows = _rows(table)
    numeric = [bool(rows) and all(_is_number(r[i]) or r[i] is None for r in rows)
               and any(_is_number(r[i]) for r in rows) for i in range(len(columns))]
    parts = [f'<section class="card table" id="table-{slug}"><h3>{esc(table.get("title", ""))}</h3>']
    if not rows:
        parts.append('<p class="empty">no rows</p>')
    else:
        parts.append('<div class="table-wrap"><table><thead><tr>')
        parts += [f"<th{NUM if numeric[i] else ''} scope=\"col\">{esc(c)}</th>" for i, c in enumerate(columns)]
        parts.append("</tr></thead><tbody>")
        for row in rows:
            parts.append("<tr>")
            for i, cell in enumerate(row):
                text = format_cell(cell)
                classes = [name for name, on in (("num", numeric[i] or _is_number(cell)), ("missing", text == MISSING))
                           if on]
                attributes = f' class="{" ".join(classes)}"' if classes else ""
                if isinstance(cell, float) and text != MISSING and text != repr(cell):
                    attributes += f' title="{esc(repr(cell))}"'  # the full value on hover
                parts.append(f"<td{attributes}>{esc(text)}</td>")
            parts.append("</tr>")
        parts.append("</tbody></table></div>")
    if table.get("note"):
        parts.append(f'<p class="note">{esc(table["note"])}</p>')
    parts.append(f'<p class="csv">CSV: {esc(slug)}.csv</p></section>')
    return "".join(parts)


def render_html(summary: Mapping[str, Any], *, generated: datetime | None = None) -> str:
    """The report page: header, notes, tables, charts, command and config, all inline (CSS and SVG, no script)."""
    title = str(summary.get("title") or "Load test report")
    when = (generated or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    tables, charts = _tables(summary), _charts(summary)
    slugs = table_slugs(tables)
    notes = _strings(summary.get("notes"))
    command = summary.get("command")
    config = summary.get("config")

    contents = []
    for label, anchor, present in (("Notes", "notes", notes), ("Tables", "tables", tables),
                                   ("Charts", "charts", charts), ("Command", "command", command is not None),
                                   ("Configuration", "config", config is not None)):
        if present:
            contents.append(f'<a href="#{anchor}">{label}</a>')

    parts = ['<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n',
             '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
             f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n",
             f"<header>\n<h1>{esc(title)}</h1>\n"]
    if summary.get("subtitle"):
        parts.append(f'<p class="subtitle">{esc(summary["subtitle"])}</p>\n')
    parts.append(f'<p class="generated">Generated {when}</p>\n')
    if contents:
        parts.append(f'<nav class="contents">{"".join(contents)}</nav>\n')
    parts.append("</header>\n<main>\n")
    if notes:
        parts.append('<section class="notes" id="notes"><h2>Notes</h2>')
        parts += [f"<p>{esc(note)}</p>" for note in notes]
        parts.append("</section>\n")
    if tables:
        parts.append('<section class="tables" id="tables"><h2>Tables</h2>\n')
        parts += [_table_html(table, slug) + "\n" for table, slug in zip(tables, slugs)]
        parts.append("</section>\n")
    if charts:
        parts.append('<section id="charts"><h2>Charts</h2>\n<div class="charts">\n')
        for i, chart in enumerate(charts, 1):
            caption = f"<figcaption>{esc(chart['note'])}</figcaption>" if chart.get("note") else ""
            parts.append(f'<figure id="chart-{i}">{render_chart(chart)}{caption}</figure>\n')
        parts.append("</div>\n</section>\n")
    if command is not None:
        parts.append(f'<section id="command"><h2>Command</h2>\n<pre class="command">{esc(command)}</pre>\n</section>\n')
    if config is not None:
        text = json.dumps(json_safe(config), indent=2, ensure_ascii=False)
        count = f" ({len(config)} keys)" if isinstance(config, Mapping) else ""
        parts.append(f'<section id="config"><h2>Configuration</h2>\n<details><summary>Show the configuration{count}'
                     f'</summary>\n<pre class="config">{esc(text)}</pre>\n</details>\n</section>\n')
    parts.append("</main>\n<footer>cachesvc load-test report; the tables are also written as CSV files next to this "
                 "page, the whole document as summary.json.</footer>\n</body>\n</html>\n")
    return "".join(parts)


# --- the files -------------------------------------------------------------------------------------------------------


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        if header:
            writer.writerow(header)
        for row in rows:
            writer.writerow([_csv_value(v) for v in row])


def write_records_csv(path: Path, records: Sequence[Mapping[str, Any]]) -> None:
    """The per-request records as CSV: nested dicts flattened to ``a.b`` columns, lists JSON-encoded."""
    flat = [flatten(r) for r in records if isinstance(r, Mapping)]
    columns: dict[str, None] = {}
    for row in flat:
        columns.update(dict.fromkeys(row))
    _write_csv(path, list(columns), ([row.get(c) for c in columns] for row in flat))


def write_report(out_dir: Path, summary: Mapping[str, Any],
                 records: Sequence[Mapping[str, Any]] | None = None) -> Path:
    """Writes report.html, summary.json, a CSV per table and requests.csv (records given) into out_dir; the page."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = _tables(summary)
    for table, slug in zip(tables, table_slugs(tables)):
        columns, rows = _rows(table)
        _write_csv(out_dir / f"{slug}.csv", columns, rows)
    if records is not None:
        write_records_csv(out_dir / "requests.csv", records)
    (out_dir / "summary.json").write_text(
        json.dumps(json_safe(summary), indent=2, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")
    page = out_dir / "report.html"
    page.write_text(render_html(summary), encoding="utf-8")
    return page
