"""The leak matcher finds a secret in each form it can leak in, and nothing else."""

from __future__ import annotations

import base64
import json
import re
from urllib.parse import quote, quote_plus

import pytest

from tests.hygiene.matcher import KnownSecret, encodings, find_leaks

# "~~~" and "???" make '+' and '/' in standard base64 ('-' and '_' in the URL-safe one), and
# the space, '+', '/', ':' and '@' make URL encoding differ from the raw text.
SECRET = KnownSecret("pw~~~???+/: @Zq81-Hx7", username="robot")
SECRETS = {"registry password": SECRET}
OTHER = KnownSecret("an-entirely-different-value-42", username="robot")


def found(text: str | bytes) -> list[str]:
    return find_leaks(text, SECRETS, where="sample")


class TestEncodings:
    def test_raw_secret_is_found(self) -> None:
        """The plain secret inside a log line is found."""
        assert found(f'{{"event": "x", "error": "bad {SECRET.value}"}}') == [
            "sample: registry password appears raw"]

    @pytest.mark.parametrize("offset", [0, 1, 2])
    @pytest.mark.parametrize(("alphabet", "encode"), [
        ("base64", base64.b64encode), ("base64url", base64.urlsafe_b64encode)])
    def test_base64_at_every_alignment_is_found(self, alphabet: str, encode: object,
                                                offset: int) -> None:
        """The secret base64-encoded inside a longer stream, starting at any byte, is found."""
        assert callable(encode)
        stream = encode(b"x" * offset + SECRET.value.encode() + b"tail")
        assert f"sample: registry password appears {alphabet}@{offset}" in found(stream)

    def test_the_two_base64_alphabets_differ_for_this_secret(self) -> None:
        """The test secret exercises '+' and '/' (else the URL-safe cases would prove nothing)."""
        forms = encodings(SECRET)
        assert all(forms[f"base64@{i}"] != forms[f"base64url@{i}"] for i in range(3))

    def test_docker_auth_pair_is_found(self) -> None:
        """``base64(username:password)``, as docker writes ``auth``, is found."""
        auth = base64.b64encode(f"{SECRET.username}:{SECRET.value}".encode()).decode()
        leaks = found(json.dumps({"auths": {"r": {"auth": auth}}}))
        assert "sample: registry password appears base64(username:password)" in leaks

    @pytest.mark.parametrize(("form", "encoded"), [
        ("url-encoded", quote(SECRET.value, safe="")),
        ("url-encoded (lowercase hex)",
         re.sub("%[0-9A-F]{2}", lambda m: m[0].lower(), quote(SECRET.value, safe=""))),
        ("url-encoded (form)", quote_plus(SECRET.value)),
    ])
    def test_url_encoded_secret_is_found(self, form: str, encoded: str) -> None:
        """Percent-encoding, in either hex case, and form encoding are found."""
        assert encoded != SECRET.value
        assert f"sample: registry password appears {form}" in found(f"GET /x?pw={encoded} 200")

    def test_json_escaped_secret_is_found(self) -> None:
        """A secret with characters JSON escapes is found in its escaped form."""
        quoted = KnownSecret('say "hi" \\ bye')
        assert find_leaks(json.dumps({"v": quoted.value}), {"q": quoted}, where="s") == [
            "s: q appears json-escaped"]


class TestNoFalseAlarms:
    def test_other_text_is_clean(self) -> None:
        """Another secret in every form, and the redaction marker, are not reported."""
        text = b"***".join(encodings(OTHER).values()) + b" Secret('***')"
        assert found(text) == []

    def test_report_never_contains_the_secret(self) -> None:
        """What the matcher reports names the secret and the form, never the value."""
        leaks = found(SECRET.value + base64.b64encode(SECRET.value.encode()).decode())
        assert leaks
        assert not any(SECRET.value in leak for leak in leaks)
