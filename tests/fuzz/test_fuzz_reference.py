"""Fuzzing ``parse_image``: references from Docker's grammar (``grammar.py``), and garbage.

Each generated reference comes with the parse docker gives it, so the parser is checked
against the grammar, not only against itself. The contract for any string: ``parse_image``
returns a reference or raises ``InvalidReferenceError``, with a message of bounded length.
"""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from controller.reference import (
    HUB_REGISTRY,
    ImageReference,
    InvalidReferenceError,
    parse_image,
)
from tests.fuzz.budget import count, fuzz_settings
from tests.fuzz.grammar import DIGEST_LENGTHS, Generated, garbage, looks_like_domain, references

MAX_MESSAGE = 400
"""An error quotes the input, but never more than this: an image may be megabytes long."""


def _check_contract(text: str) -> ImageReference | None:
    """The one property every input has: a reference, or the one error with a short message."""
    try:
        return parse_image(text)
    except InvalidReferenceError as e:
        message = str(e)
    assert len(message) <= MAX_MESSAGE, f"an error of {len(message)} characters"
    return None


class TestGrammar:
    @fuzz_settings(quick=300, full=40_000)
    @given(references())
    @example(Generated("docker.io/" + "a" * 64, round_trips=True,  # found by this target
                       expected=ImageReference(registry="docker.io", path="library/" + "a" * 64)))
    def test_valid_references_parse_as_docker_reads_them(self, generated: Generated) -> None:
        """Every reference from the grammar parses to the registry, path, tag and digest
        docker gives it, and its canonical and familiar forms parse back to it."""
        count("reference: grammar")
        reference = parse_image(generated.text)
        assert reference == generated.expected
        if generated.round_trips:
            assert parse_image(str(reference)) == reference
            assert parse_image(reference.familiar) == reference


class TestGarbage:
    @fuzz_settings(quick=300, full=25_000)
    @given(garbage)
    @example("000000000000A" + "\x1f" * 8 + "\U00010768" * 13)  # escapes made it 402 long
    def test_any_text_parses_or_raises_the_one_error(self, text: str) -> None:
        """Any string gives a reference that round-trips, or ``InvalidReferenceError``."""
        count("reference: garbage")
        reference = _check_contract(text)
        if reference is not None and (reference.registry == HUB_REGISTRY
                                      or looks_like_domain(reference.registry)):
            assert parse_image(str(reference)) == reference
            assert parse_image(reference.familiar) == reference

    @fuzz_settings(quick=50, full=2_000)
    @given(references(), st.sampled_from(["path", "digest", "id"]))
    def test_refused_by_design(self, generated: Generated, flaw: str) -> None:
        """A path over 255 characters, a digest of the wrong length and an image id raise."""
        count("reference: refused")
        reference = generated.expected
        if flaw == "path":
            text = f"{reference.registry}/{'a' * 256}"
        elif flaw == "digest":
            algorithm = reference.digest.partition(":")[0] if reference.digest else "sha256"
            text = f"{reference.name}@{algorithm}:{'a' * (DIGEST_LENGTHS[algorithm] - 1)}"
        else:
            text = "0123456789abcdef" * 4
        assert _check_contract(text) is None
