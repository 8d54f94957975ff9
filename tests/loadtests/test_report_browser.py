"""The report in a real browser: headless Chromium screenshots a sample page and dumps its DOM.

Skipped when no Chromium binary is found (``apt-get install -y chromium`` on Debian; ``scripts/test`` installs it),
except when the environment variable CI is set: there it fails, so that CI cannot pass by skipping it.
``CHROMIUM=/path/to/binary`` picks another binary.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest

from cachesvc.loadtests.report import write_report
from cachesvc.loadtests.svg_charts import PALETTE
from tests.loadtests.test_report import XSS, sample_records, sample_summary

WIDTH, HEIGHT = 1280, 2400
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="module")
def chromium() -> str:
    """The Chromium binary, or a skip (a failure under CI) saying how to get one."""
    names = [os.environ["CHROMIUM"]] if os.environ.get("CHROMIUM") else ["chromium", "chromium-browser"]
    found = next((path for path in map(shutil.which, names) if path), None)
    if not found:
        reason = "no chromium binary found (install it: apt-get install -y chromium; or set CHROMIUM=/path)"
        if in_ci():
            pytest.fail(f"{reason}; CI is set, so the browser check may not be skipped")
        pytest.skip(reason)
    return found


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_report(tmp_path_factory.mktemp("report"), sample_summary(), sample_records())


def run_chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    command = [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--hide-scrollbars", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
               f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, timeout=180, check=False)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR", "not a PNG file"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def decode_png(data: bytes) -> tuple[int, int, int, bytes]:
    """``(width, height, channels, pixels)`` of an 8-bit, non-interlaced grey/RGB/RGBA PNG, with the stdlib only."""
    pos, idat = 8, []
    width = height = channels = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and interlace == 0 and colour_type in (0, 2, 4, 6), (depth, colour_type, interlace)
            channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour_type]
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    raw = zlib.decompress(b"".join(idat))
    stride = width * channels
    out = bytearray(height * stride)
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        if kind == 1:
            for i in range(channels, stride):
                line[i] = (line[i] + line[i - channels]) & 0xFF
        elif kind == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, previous))
        elif kind == 3:
            for i in range(stride):
                left = line[i - channels] if i >= channels else 0
                line[i] = (line[i] + ((left + previous[i]) >> 1)) & 0xFF
        elif kind == 4:
            for i in range(stride):
                a = line[i - channels] if i >= channels else 0
                b, c = previous[i], previous[i - channels] if i >= channels else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        out[y * stride:(y + 1) * stride] = line
        previous = line
    return width, height, channels, bytes(out)


def colour_counts(data: bytes) -> Counter[tuple[int, int, int]]:
    """How many pixels have each RGB colour (the stdlib decoder: PIL is not a test dependency)."""
    _, _, channels, pixels = decode_png(data)
    if channels < 3:
        return Counter((v, v, v) for v in pixels[::channels])
    return Counter(zip(pixels[0::channels], pixels[1::channels], pixels[2::channels]))


def encode_png(width: int, height: int, pixels: bytes) -> bytes:
    """An RGB PNG whose rows use each of the five filter types in turn (to test the decoder against)."""
    stride, rows = width * 3, []
    previous = bytes(stride)
    for y in range(height):
        line = pixels[y * stride:(y + 1) * stride]
        kind = y % 5
        out = bytearray()
        for i, x in enumerate(line):
            a = line[i - 3] if i >= 3 else 0
            b, c = previous[i], previous[i - 3] if i >= 3 else 0
            p = a + b - c
            paeth = a if abs(p - a) <= abs(p - b) and abs(p - a) <= abs(p - c) else b if abs(p - b) <= abs(p - c) else c
            out.append((x - (0, a, b, (a + b) >> 1, paeth)[kind]) & 0xFF)
        rows.append(bytes([kind]) + bytes(out))
        previous = line

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b"")


def test_png_decoder() -> None:
    pixels = bytes((x * 37 + y * 91 + (x * y) % 7) & 0xFF for y in range(11) for x in range(3 * 13))
    data = encode_png(13, 11, pixels)
    assert png_size(data) == (13, 11)
    assert decode_png(data) == (13, 11, 3, pixels)
    assert sum(colour_counts(data).values()) == 13 * 11


def rgb(hex_colour: str) -> tuple[int, int, int]:
    return int(hex_colour[1:3], 16), int(hex_colour[3:5], 16), int(hex_colour[5:7], 16)


def test_screenshot_shows_the_page(chromium: str, report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    done = run_chromium(chromium, tmp_path / "profile", f"--screenshot={shot}", f"--window-size={WIDTH},{HEIGHT}",
                        report.as_uri())
    assert done.returncode == 0 and shot.exists(), done.stderr.decode(errors="replace")[-2000:]
    data = shot.read_bytes()
    assert png_size(data) == (WIDTH, HEIGHT)
    counts = colour_counts(data)
    assert sum(counts.values()) == WIDTH * HEIGHT
    background, most = counts.most_common(1)[0]
    assert most < WIDTH * HEIGHT * 0.95, "the page is (nearly) blank"
    assert len(counts) > 500, f"only {len(counts)} distinct colours: text and charts did not render"
    # The bar chart's bars are solid fills of the first two palette colours; lines and histograms add more pixels.
    for colour in PALETTE[:3]:
        assert counts[rgb(colour)] > 200, f"chart colour {colour} barely appears ({counts[rgb(colour)]} pixels)"
    dark = sum(n for (r, g, b), n in counts.items() if r + g + b < 200)
    assert dark > 5000, "too little dark (text) pixels"


class Dom(HTMLParser):
    """Counts of start tags, the classes of svg elements, and the text, of a dumped DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: Counter[str] = Counter()
        self.svg_classes: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] += 1
        if tag == "svg":
            self.svg_classes.append(dict(attrs).get("class") or "")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_dumped_dom_has_the_charts(chromium: str, report: Path, tmp_path: Path) -> None:
    done = run_chromium(chromium, tmp_path / "profile", "--dump-dom", report.as_uri())
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    dom = done.stdout.decode()
    parser = Dom()
    parser.feed(dom)
    parser.close()
    summary = sample_summary()
    assert parser.tags["svg"] == len(summary["charts"])
    kinds = [c.split("chart-")[-1] for c in parser.svg_classes]
    assert kinds == ["line", "line", "distribution", "bar", "line", "distribution"]
    assert parser.tags["table"] == len(summary["tables"]) and parser.tags["script"] == 0
    assert parser.tags["polyline"] > 10 and parser.tags["rect"] > 10
    text = "".join(parser.text)
    assert XSS in text  # the hostile names came through as text
    assert text.count("no data") == 1 and "Throughput over time" in text and "Generated " in text
