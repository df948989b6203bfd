"""Image references, registry hosts and auth keys, checked against docker's own cases."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from controller.reference import (
    ImageReference,
    InvalidReferenceError,
    auth_key,
    normalize_registry_host,
    parse_image,
)

SHA = "sha256:" + "a" * 64


def ref(registry: str, path: str, tag: str | None = None,
        digest: str | None = None) -> ImageReference:
    return ImageReference(registry=registry, path=path, tag=tag, digest=digest)


VALID = [
    ("ubuntu", ref("docker.io", "library/ubuntu")),
    ("ubuntu:22.04", ref("docker.io", "library/ubuntu", "22.04")),
    ("library/ubuntu", ref("docker.io", "library/ubuntu")),
    ("docker.io/ubuntu", ref("docker.io", "library/ubuntu")),
    ("docker.io/library/ubuntu", ref("docker.io", "library/ubuntu")),
    ("team/app", ref("docker.io", "team/app")),
    ("index.docker.io/x", ref("docker.io", "library/x")),
    ("index.docker.io/team/x", ref("docker.io", "team/x")),
    ("INDEX.docker.io/x", ref("docker.io", "library/x")),
    ("registry-1.docker.io/team/x", ref("registry-1.docker.io", "team/x")),
    ("localhost/x", ref("localhost", "x")),
    ("localhost:5000/x:tag", ref("localhost:5000", "x", "tag")),
    ("localhost:5000", ref("docker.io", "library/localhost", "5000")),
    ("registry.example.com:5000", ref("docker.io", "library/registry.example.com", "5000")),
    ("test-com:8080/foo", ref("test-com:8080", "foo")),
    ("127.0.0.1:5000/a/b@" + SHA, ref("127.0.0.1:5000", "a/b", None, SHA)),
    ("[::1]:5000/x", ref("[::1]:5000", "x")),
    ("[2001:db8::1]/x", ref("[2001:db8::1]", "x")),
    ("[2001:DB8::1]/x", ref("[2001:db8::1]", "x")),
    ("registry.Example.com/a", ref("registry.example.com", "a")),
    ("Foo/bar", ref("foo", "bar")),
    ("xn--n3h.com:18080/foo", ref("xn--n3h.com:18080", "foo")),
    ("busybox:latest@" + SHA, ref("docker.io", "library/busybox", "latest", SHA)),
    ("a__b", ref("docker.io", "library/a__b")),
    ("a---b/c.d_e", ref("docker.io", "a---b/c.d_e")),
    ("ubuntu:Latest_1.0-rc", ref("docker.io", "library/ubuntu", "Latest_1.0-rc")),
    ("x:" + "t" * 128, ref("docker.io", "library/x", "t" * 128)),
    ("x@sha512:" + "0" * 128, ref("docker.io", "library/x", None, "sha512:" + "0" * 128)),
    ("docker.io/" + "a" * 64, ref("docker.io", "library/" + "a" * 64)),
    ("e.com/" + "a" * 255, ref("e.com", "a" * 255)),
]

INVALID = [
    ("", "empty"),
    ("a" * 1025, "longer than 1024"),
    (" ubuntu", "invalid reference format"),
    ("ubuntu ", "invalid reference format"),
    ("ubuntu\n", "invalid reference format"),
    ("a//b", "invalid reference format"),
    ("a___b", "invalid reference format"),
    ("-a", "invalid reference format"),
    ("a-", "invalid reference format"),
    ("docker/", "invalid reference format"),
    ("foo/Bar", "must be lowercase"),
    ("docker.io/docker/Docker", "must be lowercase"),
    ("FOO/Bar", "must be lowercase"),
    ("https://github.com/docker/docker", "not a valid registry"),
    ("sub.example.com:abc/x", "not a valid registry"),
    ("a_b.com/x", "not a valid registry"),
    ("-docker.io/x", "not a valid registry"),
    ("[::1]:5000", "invalid reference format"),
    ("[::1]", "invalid reference format"),
    ("example.com:5000/", "invalid reference format"),
    ("fc00::1:5000/debian", "not a valid registry"),
    ("[fe80::1%eth0]:5000/debian", "not a valid registry"),
    ("x:" + "t" * 129, "invalid reference format"),
    ("x:-tag", "invalid reference format"),
    ("x:tag@" + SHA + ":tag", "invalid reference format"),
    ("x@sha256:" + "a" * 63, "64 lowercase hex digits"),
    ("x@sha256:" + "A" * 64, "64 lowercase hex digits"),
    ("x@md5:" + "a" * 32, "unsupported digest algorithm"),
    ("x@sha256", "invalid reference format"),
    ("a" * 64, "image id"),
    ("e.com/" + "a" * 256, "not be more than 255"),
    ("a" * 248, "not be more than 255"),
    ("ubüntu", "invalid reference format"),
    ("x:tägg", "invalid reference format"),
]


class TestParseImage:
    @pytest.mark.parametrize(("image", "expected"), VALID, ids=[i[:40] for i, _ in VALID])
    def test_valid(self, image: str, expected: ImageReference) -> None:
        """A reference docker accepts parses to its normalised registry, path, tag and digest."""
        assert parse_image(image) == expected

    @pytest.mark.parametrize(("image", "reason"), INVALID,
                             ids=[repr(i[:40]) for i, _ in INVALID])
    def test_invalid(self, image: str, reason: str) -> None:
        """A reference docker rejects raises with a reason and the image itself."""
        with pytest.raises(InvalidReferenceError, match=reason) as info:
            parse_image(image)
        assert repr(image[:100]) in str(info.value)

    def test_long_image_is_quoted_short(self) -> None:
        """An error quotes the first 100 characters of a long image and says how long it is."""
        with pytest.raises(InvalidReferenceError) as info:
            parse_image("Bad/" + "x" * 900)
        assert len(str(info.value)) < 250
        assert "(904 characters)" in str(info.value)

    def test_image_longer_than_any_reference_is_refused_at_once(self) -> None:
        """Over 1024 characters no reference is valid; the regexes never see such an image."""
        with pytest.raises(InvalidReferenceError, match="longer than 1024 characters"):
            parse_image("a-" * 50_000)

    def test_error_is_a_value_error(self) -> None:
        """Callers that only know ValueError still catch a bad reference."""
        with pytest.raises(ValueError, match="invalid image reference"):
            parse_image("a//b")


class TestForms:
    @pytest.mark.parametrize(("image", "canonical", "familiar"), [
        ("ubuntu", "docker.io/library/ubuntu", "ubuntu"),
        ("team/app:1", "docker.io/team/app:1", "team/app:1"),
        ("library/a/b", "docker.io/library/a/b", "library/a/b"),
        ("docker.io/a.b/c", "docker.io/a.b/c", "docker.io/a.b/c"),
        ("docker.io/localhost/c", "docker.io/localhost/c", "docker.io/localhost/c"),
        ("localhost:5000", "docker.io/library/localhost:5000", "localhost:5000"),
        ("e.com/x:t@" + SHA, "e.com/x:t@" + SHA, "e.com/x:t@" + SHA),
        ("docker.io/" + "a" * 64, "docker.io/library/" + "a" * 64, "library/" + "a" * 64),
        ("docker.io/" + "a" * 64 + ":1", "docker.io/library/" + "a" * 64 + ":1", "a" * 64 + ":1"),
    ], ids=["official", "user", "nested-library", "dotted-namespace", "localhost-namespace",
            "bare-localhost", "tag-and-digest", "hex-name-keeps-library", "hex-name-with-tag"])
    def test_canonical_and_familiar(self, image: str, canonical: str, familiar: str) -> None:
        """``str()`` is the full name; ``familiar`` is docker's short form that parses back."""
        parsed = parse_image(image)
        assert (str(parsed), parsed.familiar) == (canonical, familiar)
        assert parse_image(parsed.familiar) == parsed


class TestNormalizeRegistryHost:
    @pytest.mark.parametrize(("host", "expected"), [
        ("docker.io", "docker.io"),
        ("index.docker.io", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("Index.Docker.IO", "docker.io"),
        ("Registry.Example.com:5000", "registry.example.com:5000"),
        ("localhost", "localhost"),
        ("registry", "registry"),
        ("10.0.0.1:443", "10.0.0.1:443"),
        ("[2001:DB8::1]:5000", "[2001:db8::1]:5000"),
    ], ids=["hub", "legacy-hub", "registry-1", "hub-uppercase", "mixed-case-port", "localhost",
            "single-label", "ipv4", "ipv6"])
    def test_normalizes(self, host: str, expected: str) -> None:
        """Hosts are lowercased and every Hub alias becomes docker.io."""
        assert normalize_registry_host(host) == expected

    @pytest.mark.parametrize("host", [
        "", "https://registry.example.com", "registry.example.com/v2", "host:abc", "host:",
        " host", "a_b.com", "-host", "[::1",
    ], ids=["empty", "scheme", "path", "port-letters", "port-empty", "space", "underscore",
            "leading-dash", "open-bracket"])
    def test_rejects(self, host: str) -> None:
        """Anything but host[:port] raises, naming the host."""
        with pytest.raises(InvalidReferenceError, match="invalid registry host"):
            normalize_registry_host(host)

    def test_matches_parsed_image_registry(self) -> None:
        """A configured host compares equal to the registry of an image on it."""
        image = parse_image("Registry.Example.com:5000/team/app:1")
        assert normalize_registry_host("REGISTRY.example.COM:5000") == image.registry


class TestAuthKey:
    @pytest.mark.parametrize(("registry", "expected"), [
        ("docker.io", "https://index.docker.io/v1/"),
        ("index.docker.io", "https://index.docker.io/v1/"),
        ("registry-1.docker.io", "https://index.docker.io/v1/"),
        ("registry.example.com:5000", "registry.example.com:5000"),
        ("Registry.Example.com", "registry.example.com"),
        ("localhost:5000", "localhost:5000"),
        ("[::1]:5000", "[::1]:5000"),
    ], ids=["hub", "legacy-hub", "registry-1", "port", "mixed-case", "localhost", "ipv6"])
    def test_key(self, registry: str, expected: str) -> None:
        """Docker Hub is keyed by its v1 index URL, every other registry by host[:port]."""
        assert auth_key(registry) == expected

    def test_rejects_invalid_registry(self) -> None:
        """An invalid registry raises instead of writing an unusable key."""
        with pytest.raises(InvalidReferenceError):
            auth_key("https://registry.example.com/")


# --- round-trip property ---------------------------------------------------------------------

_alnum = st.from_regex(r"[a-z0-9]{1,6}", fullmatch=True)
_separator = st.sampled_from([".", "_", "__", "-", "--"])
_path_component = st.builds(
    lambda first, rest: first + "".join(s + a for s, a in rest),
    _alnum, st.lists(st.tuples(_separator, _alnum), max_size=3))
_domain_component = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
_port = st.integers(min_value=1, max_value=65535).map(lambda p: f":{p}")
_registries = st.one_of(
    st.just("docker.io"),
    st.builds(lambda parts, port: ".".join(parts) + port,
              st.lists(_domain_component, min_size=2, max_size=4),
              st.one_of(st.just(""), _port)),
    st.builds(lambda host, port: host + port,
              st.sampled_from(["localhost", "registry", "[::1]", "[2001:db8::5]"]), _port),
    st.just("localhost"),
)
_tags = st.none() | st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
_digests = st.none() | st.builds(lambda algo, hexdigits: f"{algo}:{hexdigits}",
                                 st.sampled_from(["sha256"]),
                                 st.from_regex(r"[a-f0-9]{64}", fullmatch=True))


@st.composite
def references(draw: st.DrawFn) -> ImageReference:
    registry = draw(_registries)
    assume(registry != "index.docker.io")
    components = draw(st.lists(_path_component, min_size=2 if registry == "docker.io" else 1,
                               max_size=4))
    path = "/".join(components)
    assume(len(path) <= 255)
    return ImageReference(registry=registry, path=path, tag=draw(_tags), digest=draw(_digests))


@given(references())
def test_canonical_form_round_trips(reference: ImageReference) -> None:
    """Any valid reference parses back from its canonical string."""
    assert parse_image(str(reference)) == reference


@given(references())
def test_familiar_form_round_trips(reference: ImageReference) -> None:
    """Any valid reference parses back from its familiar (short) string."""
    assert parse_image(reference.familiar) == reference


@given(references())
def test_uppercase_registry_parses_to_lowercase(reference: ImageReference) -> None:
    """Spelling the registry in uppercase changes nothing but the spelling."""
    assume(reference.registry != "docker.io")
    assert parse_image(str(reference).replace(reference.registry,
                                              reference.registry.upper(), 1)) == reference
