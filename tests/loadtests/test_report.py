"""The report writer: the files it writes, escaping, a page without external URLs, chart ticks and degenerate input."""

from __future__ import annotations

import csv
import html
import json
import math
import random
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest

from cachesvc.loadtests import svg_charts
from cachesvc.loadtests.report import (
    MISSING,
    flatten,
    format_cell,
    json_safe,
    render_chart,
    render_html,
    slugify,
    table_slugs,
    write_report,
)
from cachesvc.loadtests.svg_charts import (
    PALETTE,
    bar_chart,
    distribution_chart,
    format_compact,
    format_ticks,
    histogram_counts,
    histogram_edges,
    line_chart,
    log_ticks,
    nice_step,
    nice_ticks,
)

SVG = "{http://www.w3.org/2000/svg}"
XSS = "<script>alert('x')</script>"


def sample_summary() -> dict:
    """A document with every section, every chart kind, hostile names, NaN and None, and two degenerate charts."""
    rng = random.Random(7)
    xs = list(range(0, 300, 5))
    return {
        "title": f"Load test {XSS} & co",
        "subtitle": "open loop, 20 requests/s against the stand-in upstream",
        "command": "python3 -m cachesvc.loadtests run --rate 20 --duration 300 \\\n"
                   "    --slo 'ttft:500,e2e:2000'  # <x>",
        "config": {"rate": 20, "duration_s": 300, "slo": {"ttft_s": 0.5, "latency_s": math.nan}, "tags": ["a", XSS]},
        "notes": ["The proxy ran with the default policies.\nA second line.", f"Hostile note {XSS}"],
        "tables": [
            {"title": "Throughput", "columns": ["duration s", "requests", "requests/s", "goodput share"],
             "rows": [[300.12, 6000, 19.9567, 0.98765]], "note": "Goodput counts requests meeting every objective."},
            {"title": "Latency (ms)", "columns": ["metric", "count", "mean", "p50", "p99"],
             "rows": [["time to first token", 5987, 123.456, 98.7, 1234.5],
                      ["inter-token latency", 123456, 0.01234, math.nan, None],
                      [XSS, 0, None, 2.5e-5, 1234567.8]]},
            {"title": "Latency (ms)", "columns": ["again"], "rows": [[1]]},
        ],
        "charts": [
            {"title": "Throughput over time", "kind": "line", "x_label": "seconds", "y_label": "per second",
             "series": {"requests/s": {"x": xs, "y": [20 + rng.gauss(0, 1.5) for _ in xs]},
                        "goodput/s": {"x": xs, "y": [None if 100 < x < 130 else 18 + rng.gauss(0, 1.5) for x in xs]}}},
            {"title": "Latency percentiles over time", "kind": "line", "x_label": "seconds", "y_label": "seconds",
             "log_y": True,
             "series": {f"{k} p{q}": {"x": xs, "y": [m * (1 + q / 30) * math.exp(rng.gauss(0, 0.2)) for _ in xs]}
                        for k, m in (("latency", 0.8), ("TTFT", 0.08)) for q in (50, 90, 99)}},
            {"title": "Time to first token and end-to-end latency", "kind": "distribution", "x_label": "seconds",
             "y_label": "requests", "log_x": True,
             "series": {"time to first token": [rng.lognormvariate(-2.3, 0.5) for _ in range(2000)],
                        "end-to-end": [rng.lognormvariate(0, 0.4) for _ in range(2000)]}},
            {"title": f"Hit rate by category {XSS}", "kind": "bar", "x_label": "category", "y_label": "hit rate",
             "series": {"exact": {"faq": 0.4, "code": 0.1, XSS: 0.2, "chat": None},
                        XSS: {"faq": 0.3, "code": 0.05, XSS: 0.15, "chat": 0.02}}},
            {"title": "Nothing measured", "kind": "line", "x_label": "s", "y_label": "v", "series": {}},
            {"title": "All equal", "kind": "distribution", "x_label": "s", "y_label": "n",
             "series": {"same": [2.0] * 9}},
        ],
    }


def sample_records() -> list[dict]:
    return [
        {"id": 0, "status": 200, "latency_s": 0.5, "gaps_s": [0.1, 0.2], "stream": True,
         "headers": {"x-cachesvc-cache": "hit", "x-cachesvc-tier": "exact"},
         "truth": {"category": "faq", "intent": {"key": "k1"}}},
        {"id": 1, "status": 0, "latency_s": math.nan, "gaps_s": [], "error": "connection refused", "stream": False,
         "headers": {}, "truth": {"category": XSS}},
    ]


class Elements(HTMLParser):
    """Every start tag with its attributes, in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    handle_startendtag = handle_starttag


def elements(page: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Elements()
    parser.feed(page)
    parser.close()
    return parser.tags


def svgs(page: str) -> list[str]:
    return re.findall(r"<svg\b.*?</svg>", page, flags=re.S)


# --- the files -------------------------------------------------------------------------------------------------------


def test_write_report_writes_every_file(tmp_path: Path) -> None:
    summary = sample_summary()
    page = write_report(tmp_path / "out", summary, sample_records())
    out = tmp_path / "out"
    assert page == out / "report.html"
    names = sorted(p.name for p in out.iterdir())
    assert names == ["latency-ms-2.csv", "latency-ms.csv", "report.html", "requests.csv", "summary.json",
                     "throughput.csv"]
    assert page.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")

    def no_constants(name: str) -> None:
        raise AssertionError(f"summary.json holds {name}")

    loaded = json.loads((out / "summary.json").read_text(encoding="utf-8"), parse_constant=no_constants)
    assert loaded["title"] == summary["title"]
    assert loaded["config"]["slo"] == {"ttft_s": 0.5, "latency_s": None}  # NaN -> null
    assert loaded["tables"][1]["rows"][1] == ["inter-token latency", 123456, 0.01234, None, None]
    assert loaded["charts"][0]["series"]["goodput/s"]["y"][21] is None
    assert loaded == json_safe(summary)

    with open(out / "latency-ms.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["metric", "count", "mean", "p50", "p99"]
    assert rows[1] == ["time to first token", "5987", "123.456", "98.7", "1234.5"]
    assert rows[2] == ["inter-token latency", "123456", "0.01234", "", ""]  # full precision; NaN and None empty
    assert rows[3] == [XSS, "0", "", "2.5e-05", "1234567.8"]
    assert len(rows) == 1 + len(summary["tables"][1]["rows"])
    with open(out / "latency-ms-2.csv", newline="", encoding="utf-8") as f:
        assert list(csv.reader(f)) == [["again"], ["1"]]


def test_requests_csv_flattens_records(tmp_path: Path) -> None:
    write_report(tmp_path, {"title": "t"}, sample_records())
    with open(tmp_path / "requests.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    assert list(rows[0]) == ["id", "status", "latency_s", "gaps_s", "stream", "headers.x-cachesvc-cache",
                             "headers.x-cachesvc-tier", "truth.category", "truth.intent.key", "error", "headers"]
    first, second = rows
    assert first["headers.x-cachesvc-cache"] == "hit" and first["truth.intent.key"] == "k1"
    assert json.loads(first["gaps_s"]) == [0.1, 0.2] and json.loads(second["gaps_s"]) == []
    assert first["stream"] == "true" and second["stream"] == "false"
    assert second["latency_s"] == "" and second["headers.x-cachesvc-cache"] == ""  # NaN, and a field it lacks
    assert second["headers"] == "{}" and second["truth.category"] == XSS and second["error"] == "connection refused"


def test_records_are_optional(tmp_path: Path) -> None:
    write_report(tmp_path / "none", {"title": "t"})
    assert not (tmp_path / "none" / "requests.csv").exists()
    write_report(tmp_path / "empty", {"title": "t"}, [])
    assert (tmp_path / "empty" / "requests.csv").read_text() == ""


def test_flatten() -> None:
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": {}, "f": None}) == {"a.b": 1, "a.c.d": [1, 2], "e": {},
                                                                                   "f": None}


def test_slugs() -> None:
    assert slugify("Latency (ms)") == "latency-ms"
    assert slugify("  <script>alert(1)</script> ") == "script-alert-1-script"
    assert slugify("") == slugify("!!!") == "table"
    assert slugify("x" * 100) == "x" * 60
    assert table_slugs([{"title": "A"}, {"title": "a"}, {"title": "Requests"}, {}, {"title": "a"}]) == [
        "a", "a-2", "requests-table", "table", "a-3"]


def test_json_safe() -> None:
    assert json_safe({1: (math.inf, -math.inf, math.nan), "s": {3}, "p": Path("x")}) == {
        "1": [None, None, None], "s": [3], "p": "x"}


# --- the page --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "text"), [
    (None, MISSING), (math.nan, MISSING), (0.0, "0"), (0, "0"), (1234567, "1,234,567"), (19.9567, "20.0"),
    (0.98765, "0.988"), (123.456, "123"), (0.01234, "0.0123"), (0.5, "0.500"), (999.6, "1,000"),
    (1234567.8, "1,234,568"), (2.5e-5, "2.5e-5"), (-0.004567, "-0.00457"), (math.inf, "∞"), (True, "yes"),
    ("text", "text"), ([1, 2], "[1, 2]"),
])
def test_format_cell(value: object, text: str) -> None:
    assert format_cell(value) == text


def test_page_sections_in_order() -> None:
    summary = sample_summary()
    page = render_html(summary, generated=datetime(2026, 12, 2, 6, 0, 5, tzinfo=UTC))
    ids = [attrs.get("id") for tag, attrs in elements(page) if tag == "section" and attrs.get("id")]
    assert [i for i in ids if not i.startswith("table-")] == ["notes", "tables", "charts", "command", "config"]
    assert page.index("<header>") < page.index('id="notes"')
    assert "Generated 2026-12-02 06:00:05 UTC" in page
    assert f"<h1>{html.escape(summary['title'])}</h1>" in page
    assert html.escape(summary["subtitle"]) in page
    # The command verbatim (escaped) in a <pre>, the config as pretty JSON inside a <details>.
    command = re.search(r'<pre class="command">(.*?)</pre>', page, flags=re.S)
    assert command and html.unescape(command.group(1)) == summary["command"]
    config = re.search(r'<details>.*?<pre class="config">(.*?)</pre>\s*</details>', page, flags=re.S)
    assert config and json.loads(html.unescape(config.group(1))) == json_safe(summary["config"])
    assert "\n  " in config.group(1)  # indented
    # Tables: formatted cells, a dash for None/NaN, numeric columns right-aligned; one SVG per chart.
    assert page.count("<table>") == 3
    for text in ("1,234", "0.0123", "5,987", "2.5e-5", "1,234,568", "0.988", "20.0"):
        assert f">{text}</td>" in page
    assert f'<td class="num missing">{MISSING}</td>' in page
    assert '<th class="num" scope="col">count</th>' in page
    assert len(svgs(page)) == len(summary["charts"])
    assert "no data" in svgs(page)[4]


def test_page_is_minimal_without_optional_parts() -> None:
    page = render_html({})
    assert "<h1>Load test report</h1>" in page
    assert 'id="notes"' not in page and 'id="tables"' not in page and "<svg" not in page and "<pre" not in page


def test_everything_from_the_summary_is_escaped() -> None:
    summary = sample_summary()
    page = render_html(summary)
    assert "<script" not in page.lower()
    escaped = html.escape(XSS)
    assert f"<title>{html.escape(summary['title'])}</title>" in page
    for where in ('<section class="notes"', 'id="table-latency-ms"', 'id="config"'):
        start = page.index(where)
        assert escaped in page[start: page.index("</section>", start)], where
    bar = svgs(page)[3]
    assert bar.count(escaped) >= 4  # the title, a series name (legend), a category label, tooltips
    ET.fromstring(bar)  # the escaped SVG is well-formed XML too
    texts = ["".join(t.itertext()) for t in ET.fromstring(bar).iter(f"{SVG}text")]
    assert any(XSS in t for t in texts)  # rendered as text, not markup


def test_no_reference_leaves_the_page() -> None:
    summary = sample_summary()
    summary["notes"].append('See https://example.com/x and <img src="http://evil.example/a.png">')
    summary["tables"][0]["rows"].append(["http://example.com/row", None, None, None])
    summary["charts"][0]["series"]["https://example.com/series"] = {"x": [0, 1], "y": [1, 2]}
    page = render_html(summary)
    for tag, attrs in elements(page):
        assert tag not in {"script", "img", "iframe", "object", "embed", "link", "base", "image", "use", "form"}
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)
            if name in {"href", "xlink:href", "src", "srcset", "action", "formaction", "poster", "data",
                        "background", "cite"}:
                assert name == "href" and value and value.startswith("#"), (tag, name, value)
    assert "url(" not in page and "@import" not in page and "javascript:" not in page
    # Every URL left in the page is the SVG namespace, or user text (in the escaped form the page shows it).
    without_namespace = page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    for match in re.finditer(r"https?://[^\s\"'<>&]+", without_namespace):
        before = without_namespace[max(0, match.start() - 40): match.start()]
        assert 'src="' not in before and "href=" not in before
    hrefs = [attrs["href"] for tag, attrs in elements(page) if tag == "a"]
    anchors = {attrs.get("id") for _, attrs in elements(page)}
    assert hrefs and all(h[1:] in anchors for h in hrefs)  # in-page links only, and none dangling


def test_chart_kinds_and_malformed_series() -> None:
    assert "unknown chart kind &#x27;pie&#x27;" in render_chart({"title": "p", "kind": "pie", "series": {}})
    for kind in ("line", "distribution", "bar"):
        for series in (None, [], "abc", {"a": "abc"}, {"a": 3}, {"a": {"x": "ab", "y": None}}, {"a": [None, "x"]}):
            svg = render_chart({"title": "t", "kind": kind, "series": series})
            ET.fromstring(svg)
            assert "could not draw" not in svg


# --- ticks -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("lo", "hi", "ticks"), [
    (0, 1, [0, 0.2, 0.4, 0.6, 0.8, 1]),
    (0, 937, [0, 200, 400, 600, 800, 1000]),
    (3e-4, 2e-3, [0, 5e-4, 1e-3, 1.5e-3, 2e-3]),
    (0, 45, [0, 10, 20, 30, 40, 50]),
    (-3, 7, [-4, -2, 0, 2, 4, 6, 8]),
    (14.2, 22.6, [14, 16, 18, 20, 22, 24]),
    (5, 5, [4.4, 4.6, 4.8, 5.0, 5.2, 5.4, 5.6]),  # a zero range is widened by 10%
])
def test_nice_ticks(lo: float, hi: float, ticks: list[float]) -> None:
    assert nice_ticks(lo, hi) == pytest.approx(ticks, abs=1e-12)


def test_nice_steps() -> None:
    assert nice_step(1) == 0.2 and nice_step(937) == 200 and nice_step(1.7e-3) == 5e-4 and nice_step(0) == 1
    rng = random.Random(3)
    for _ in range(500):
        scale = 10.0 ** rng.randint(-8, 8)
        lo = rng.uniform(-1e3, 1e3) * scale
        hi = lo + abs(rng.gauss(0, 1)) * scale * 10 ** rng.randint(0, 3)
        ticks = nice_ticks(lo, hi)
        step = (ticks[-1] - ticks[0]) / (len(ticks) - 1)
        mantissa = step / 10 ** math.floor(math.log10(step))
        assert min(abs(mantissa - m) for m in (1, 2, 5, 10)) < 1e-6, (lo, hi, step)
        assert ticks[0] <= lo and ticks[-1] >= hi
        assert 3 <= len(ticks) <= 9, (lo, hi, ticks)
        assert all(abs((b - a) - step) <= step * 1e-6 for a, b in zip(ticks, ticks[1:]))
        assert len(set(format_ticks(ticks))) == len(ticks), ticks  # labels tell every tick apart


@pytest.mark.parametrize(("ticks", "labels"), [
    ([0, 0.2, 0.4, 0.6, 0.8, 1], ["0", "0.2", "0.4", "0.6", "0.8", "1.0"]),
    ([0, 200, 400, 600, 800, 1000], ["0", "200", "400", "600", "800", "1,000"]),
    ([0, 5e-4, 1e-3, 1.5e-3, 2e-3], ["0", "0.0005", "0.0010", "0.0015", "0.0020"]),
    ([0, 1e6, 2e6, 3e6], ["0", "1M", "2M", "3M"]),
    ([0, 5e5, 1e6, 1.5e6], ["0", "0.5M", "1.0M", "1.5M"]),
    ([0, 1e-5, 2e-5, 3e-5], ["0", "1e-5", "2e-5", "3e-5"]),
    ([-1, -0.5, 0, 0.5, 1], ["-1.0", "-0.5", "0", "0.5", "1.0"]),
])
def test_tick_labels(ticks: list[float], labels: list[str]) -> None:
    assert format_ticks(ticks) == labels


def test_log_ticks() -> None:
    assert log_ticks(3e-4, 2e-3) == pytest.approx([2e-4, 5e-4, 1e-3, 2e-3])
    assert log_ticks(0.5, 1.5) == pytest.approx([0.5, 1, 2])
    assert log_ticks(1e-3, 1e3) == pytest.approx([10.0**e for e in range(-3, 4)])
    wide = log_ticks(1e-9, 1e9)
    assert wide[0] <= 1e-9 and wide[-1] >= 1e9 and len(wide) <= 10
    assert log_ticks(7, 7)[0] < 7 < log_ticks(7, 7)[-1]
    assert log_ticks(-1, 5) == [1.0, 10.0]  # no positive range: a default decade, no error
    assert [format_compact(t) for t in log_ticks(1e-3, 1e7)] == ["0.001", "0.1", "10", "1,000", "100,000", "10M"]


# --- charts ----------------------------------------------------------------------------------------------------------


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg" and root.get("viewBox", "").startswith(f"0 0 {svg_charts.WIDTH} ")
    return root


def texts(root: ET.Element) -> list[str]:
    return ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]


def test_line_chart_parts() -> None:
    root = parse(line_chart("Title", {"a": {"x": [0, 1, 2, 3], "y": [0, 0.5, None, 1]}, "b": [(0, 1), (3, 0)]},
                            x_label="seconds", y_label="share"))
    words = texts(root)
    assert {"Title", "seconds", "share", "a", "b"} <= set(words)
    assert ["0", "0.2", "0.4", "0.6", "0.8", "1.0"] == [w for w in words if re.fullmatch(r"[\d.]+", w)][:6]
    lines = root.findall(f".//{SVG}polyline")
    assert len(lines) == 2  # series a is cut in two by its None: one two-point run and one lone point
    assert {line.get("stroke") for line in lines} == {PALETTE[0], PALETTE[1]}
    assert len(root.findall(f".//{SVG}circle")) == 5  # a marker on every point, the lone one included


def test_line_chart_log_scale_hides_non_positive() -> None:
    svg = line_chart("t", {"a": {"x": [0, 1, 2, 3], "y": [0, 0.01, 1, 100]}}, log_y=True)
    words = texts(parse(svg))
    assert {"0.01", "0.1", "1", "10", "100"} <= set(words)
    assert "1 value at or below zero not shown on the log scale" in words


def test_many_series_stay_distinguishable() -> None:
    root = parse(line_chart("t", {f"s{i}": {"x": [0, 1], "y": [i, i + 1]} for i in range(12)}))
    styles = [(line.get("stroke"), line.get("stroke-dasharray")) for line in root.findall(f".//{SVG}polyline")]
    assert len(styles) == 12 and len(set(styles)) == 12


@pytest.mark.parametrize("svg", [
    line_chart("t", {}),
    line_chart("t", {"a": {"x": [], "y": []}}),
    line_chart("t", {"a": {"x": [0, 1, 2], "y": [math.nan, None, math.inf]}}),
    line_chart("t", {"a": {"x": [0, 1], "y": [-1, 0]}}, log_y=True),
    distribution_chart("t", {}),
    distribution_chart("t", {"a": [], "b": [math.nan, None, "x"]}),
    distribution_chart("t", {"a": [0, -1]}, log_x=True),
    bar_chart("t", {}),
    bar_chart("t", {"a": {}, "b": {"x": math.nan, "y": None}}),
])
def test_no_data(svg: str) -> None:
    assert any(w.startswith("no data") for w in texts(parse(svg)))


def test_degenerate_input_draws_something() -> None:
    single = parse(line_chart("t", {"a": {"x": [5], "y": [2]}}))
    assert len(single.findall(f".//{SVG}circle")) == 1 and not single.findall(f".//{SVG}polyline")
    flat = parse(line_chart("t", {"a": {"x": [0, 1, 2], "y": [3, 3, 3]}}))
    (line,) = flat.findall(f".//{SVG}polyline")
    assert len({point.split(",")[1] for point in line.get("points", "").split()}) == 1  # a flat line
    zeros = parse(line_chart("t", {"a": {"x": [0, 1], "y": [0, 0]}}))
    assert "0" in texts(zeros) and "1.0" in texts(zeros)  # 0..1, not -1..1
    for values, log in (([2.0] * 5, False), ([2.0] * 5, True), ([0.0] * 3, False), ([7], False)):
        root = parse(distribution_chart("t", {"a": values}, log_x=log))
        assert root.findall(f".//{SVG}path") and "no data" not in texts(root)
    for series in ({"a": {"x": 5}}, {"a": {"x": 0}}, {"a": {"x": -2, "y": 3}}):
        root = parse(bar_chart("t", series))
        assert len(root.findall(f".//{SVG}rect")) == 1 + len(series["a"]) + 1  # background, bars, legend swatch


def test_histogram_bins_are_shared_and_count_everything() -> None:
    rng = random.Random(1)
    a = [rng.uniform(0, 10) for _ in range(500)]
    b = [rng.uniform(5, 20) for _ in range(300)] + [20.0]
    edges = histogram_edges(a + b)
    assert edges[0] <= min(a + b) and edges[-1] >= max(a + b)
    steps = {round(y - x, 9) for x, y in zip(edges, edges[1:])}
    assert len(steps) == 1
    assert sum(histogram_counts(a, edges)) == len(a) and sum(histogram_counts(b, edges)) == len(b)
    log_edges = histogram_edges([1e-3, 0.5, 20], log=True)
    assert log_edges[0] <= 1e-3 and log_edges[-1] >= 20
    ratios = {round(y / x, 6) for x, y in zip(log_edges, log_edges[1:])}
    assert len(ratios) == 1
    assert sum(histogram_counts([1e-3, 0.5, 20, -1, 0], log_edges, log=True)) == 3
    svg = distribution_chart("t", {"a": a, "b": b})
    assert "a (n=500)" in svg and "b (n=301)" in svg and "cumulative share" in svg


def test_bar_chart_labels() -> None:
    root = parse(bar_chart("t", {"a": {"faq": 1, "code": 2}, "b": {"code": 3, "chat": 4}}, x_label="category"))
    words = texts(root)
    assert ["faq", "code", "chat"] == [w for w in words if w in {"faq", "code", "chat"}]
    bars = [r for r in root.findall(f".//{SVG}rect") if r.find(f"{SVG}title") is not None]
    assert len(bars) == 4
    many = parse(bar_chart("t", {"a": {f"a long category name {i}": i for i in range(20)}}))
    rotated = [t for t in many.iter(f"{SVG}text") if "rotate" in (t.get("transform") or "")]
    assert len(rotated) >= 20  # long labels turn, so they do not overlap
