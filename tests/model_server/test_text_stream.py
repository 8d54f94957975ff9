"""Stop strings across token boundaries, and incremental detokenization of multi-byte characters."""

from __future__ import annotations

import pytest

from cachesvc.model_server.text_stream import IncrementalDecoder, StopStringMatcher


def run(stops: tuple[str, ...], pieces: list[str]) -> tuple[str, str | None]:
    matcher = StopStringMatcher(stops)
    out = "".join(matcher.feed(p) for p in pieces)
    return out + matcher.flush(), matcher.matched


@pytest.mark.parametrize(("stops", "pieces", "text", "matched"), [
    ((), ["a", "b"], "ab", None),
    (("END",), ["Hello E", "N", "D and more"], "Hello ", "END"),
    (("END",), ["Hello E", "NX"], "Hello ENX", None),  # a false start is released
    (("END",), ["Hello EN"], "Hello EN", None),  # held back, then flushed at the end
    (("\n\n", "###"), ["one\n", "\ntwo ###"], "one", "\n\n"),
    (("b", "ab"), ["xab"], "x", "ab"),  # the earliest position wins, whatever the order of the stops
    (("stop",), ["sto", "st", "op"], "sto", "stop"),  # a false start, then a real one across two pieces
])
def test_stop_strings(stops: tuple[str, ...], pieces: list[str], text: str, matched: str | None) -> None:
    assert run(stops, pieces) == (text, matched)


def test_nothing_is_sent_after_a_stop() -> None:
    matcher = StopStringMatcher(("x",))
    assert matcher.feed("abxcd") == "ab"
    assert matcher.feed("more") == ""
    assert matcher.flush() == ""


def test_held_back_text_is_never_released_early() -> None:
    matcher = StopStringMatcher(("<|end|>",))
    sent = matcher.feed("answer <|en")
    assert sent == "answer "
    assert matcher.feed("d|> tail") == ""
    assert matcher.matched == "<|end|>"


def test_incremental_decoder_rebuilds_multibyte_text(smollm2) -> None:
    _, tokenizer = smollm2
    text = "Café 東京 — naïve 🎉 done"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    decoder = IncrementalDecoder(tokenizer)
    deltas = [decoder.push(i) for i in ids]
    assert "".join(deltas) == tokenizer.decode(ids)
    assert all("\ufffd" not in d for d in deltas)
    assert len(ids) > len([d for d in deltas if d])  # some characters span several tokens
