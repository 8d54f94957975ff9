"""Which paths the proxy forwards to an upstream on a client's behalf: only those that stay under the upstream's
base path however a server decodes them, with methods an OpenAI-compatible server serves and a query that cannot
reach the path. Pure string checks, used by the pass-through and by ``Upstream.request`` alike."""

from __future__ import annotations

import string
import unicodedata
from urllib.parse import quote, unquote

from cachesvc.openai.errors import RequestError

# What the proxy sends to an upstream on a client's behalf. TRACE would echo the request, the proxy's key included,
# back to the client; CONNECT and WebDAV-style verbs are nothing an OpenAI-compatible server serves.
FORWARDED_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
MAX_PATH_BYTES = 2048  # longer paths are refused with 414; no OpenAI path comes near it
MAX_DECODE_ROUNDS = 4  # a segment still changing after this many percent-decodings is refused

_UNRESERVED = string.ascii_letters + string.digits + "-._~"
_PCHAR = frozenset(_UNRESERVED + "!$&'()*+,;=:@")  # RFC 3986 pchar, less the %XX escapes
_QUERY_CHARS = _PCHAR | frozenset("/?")
_HEX = frozenset(string.hexdigits)
_DOT_SEGMENTS = frozenset({".", ".."})


def refuse(reason: str) -> RequestError:
    return RequestError(404, f"Not found: the proxy forwards no such path ({reason}).", code="not_found")


def _well_escaped(text: str, allowed: frozenset[str]) -> bool:
    """Every character is in ``allowed`` or starts a well-formed ``%XX`` escape."""
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "%":
            if text[i + 1:i + 2] not in _HEX or text[i + 2:i + 3] not in _HEX:
                return False
            i += 3
        elif ch in allowed:
            i += 1
        else:
            return False
    return True


def _fully_decoded(segment: str) -> str:
    """The segment percent-decoded until nothing changes (``%252e`` -> ``%2e`` -> ``.``), as strict UTF-8."""
    for _ in range(MAX_DECODE_ROUNDS):
        try:
            decoded = unquote(segment, errors="strict")
        except UnicodeDecodeError:
            raise refuse("a segment that is not UTF-8 once decoded") from None
        if decoded == segment:
            return segment
        segment = decoded
    raise refuse("a segment encoded more times than any client encodes")


def _is_dot_segment(piece: str) -> bool:
    """``.``/``..`` as any server may read it: plainly, with ``;params`` cut off (Tomcat's ``..;``), or after Unicode
    compatibility folding (fullwidth ``．．``)."""
    return (piece in _DOT_SEGMENTS or piece.split(";", 1)[0] in _DOT_SEGMENTS
            or unicodedata.normalize("NFKC", piece) in _DOT_SEGMENTS)


def checked_path(path: str) -> str:
    """``path`` (relative to an upstream's base path, percent-encoded as it goes on the wire) if it stays under the
    base however a server decodes it; else a 404 RequestError (414 past MAX_PATH_BYTES). Returned unchanged: what is
    checked is exactly what is sent.

    Refused: an empty path, a leading ``/`` or an empty segment (``a//b``; one trailing ``/`` is kept), any raw
    character outside RFC 3986's pchar (backslash, space, control characters, non-ASCII, ``?``, ``#``) or a
    malformed ``%`` escape; and any segment which, percent-decoded until it stops changing (double encoding:
    ``%252e``) as strict UTF-8, contains a backslash or a control character (``%00``), or splits on ``/`` into an
    empty piece or a dot segment (``.``, ``..``, ``..;x``, fullwidth dots). An encoded slash inside a segment
    (``models/org%2Fname``) is forwarded still encoded, never decoded into a separator, and only when both readings
    (``org%2Fname`` as one segment, ``org/name`` as two) are safe.
    """
    if len(path.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
        raise RequestError(414, f"The path is longer than {MAX_PATH_BYTES} bytes.", code="path_too_long")
    if not path:
        raise refuse("an empty path")
    segments = path.split("/")
    if segments[-1] == "" and len(segments) > 1:
        segments.pop()  # one trailing slash
    for segment in segments:
        if not segment:
            raise refuse("an empty segment")
        if not _well_escaped(segment, _PCHAR):
            raise refuse("a character that must be percent-encoded, or a malformed escape")
        decoded = _fully_decoded(segment)
        if "\\" in decoded or any(unicodedata.category(ch) == "Cc" for ch in decoded):
            raise refuse("a backslash or a control character")
        for piece in decoded.split("/"):
            if not piece:
                raise refuse("an empty segment")
            if _is_dot_segment(piece):
                raise refuse("a dot segment")
    return path


def requoted_query(query: str) -> str:
    """A raw query string as sent, but with every character that may not appear in a query (space, ``#``, control
    characters, non-ASCII, a ``%`` that starts no escape) percent-encoded, so it can neither end the request line
    nor reach the path. Existing ``%XX`` escapes are kept, never decoded."""
    out: list[str] = []
    i, n = 0, len(query)
    while i < n:
        ch = query[i]
        if ch == "%" and query[i + 1:i + 2] in _HEX and query[i + 2:i + 3] in _HEX:
            out.append(query[i:i + 3])
            i += 3
            continue
        out.append(ch if ch in _QUERY_CHARS else quote(ch, safe="", errors="surrogateescape"))
        i += 1
    return "".join(out)
