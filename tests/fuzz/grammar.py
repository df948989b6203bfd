"""Docker's image reference grammar as Hypothesis strategies, with the parse docker gives.

The grammar is ``distribution/reference``'s (``reference.go``)::

    reference        := name [ ":" tag ] [ "@" digest ]
    name             := [domain '/'] remote-name
    domain           := host [':' port-number]
    host             := domain-name | IPv4address | '[' IPv6address ']'
    domain-name      := domain-component ['.' domain-component]*
    domain-component := /([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])/
    remote-name      := path-component ['/' path-component]*
    path-component   := alpha-numeric [separator alpha-numeric]*
    alpha-numeric    := /[a-z0-9]+/
    separator        := /[_.]|__|[-]+/
    tag              := /[\\w][\\w.-]{0,127}/
    digest           := algorithm ":" hex   (sha256, sha384, sha512 with 64, 96, 128 digits)
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import reject
from hypothesis import strategies as st

from controller.reference import HUB_REGISTRY, ImageReference

__all__ = ["DIGEST_LENGTHS", "Generated", "garbage", "looks_like_domain", "references"]

_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
_WORD = _ALNUM + "ABCDEFGHIJKLMNOPQRSTUVWXYZ_"
DIGEST_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}


@dataclass(frozen=True, slots=True)
class Generated:
    text: str
    expected: ImageReference
    round_trips: bool
    """False only where the docstring of ``ImageReference`` says so: a registry that only
    its uppercase letters mark as one (``Myhost/app``) reads as a Hub path once lowercased."""


alnums = st.text(_ALNUM, min_size=1, max_size=8)
separators = st.one_of(st.sampled_from([".", "_", "__"]),
                       st.integers(1, 3).map(lambda n: "-" * n))
path_components = st.builds(lambda first, rest: first + "".join(s + a for s, a in rest),
                            alnums, st.lists(st.tuples(separators, alnums), max_size=3))
hex64 = st.binary(min_size=32, max_size=32).map(bytes.hex)
"""A component that is 64 hex digits: alone, docker reads it as an image id."""


@st.composite
def domain_components(draw: st.DrawFn) -> str:
    letters = _ALNUM + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    edge = st.sampled_from(letters)
    if draw(st.booleans()):
        return draw(edge)
    return draw(edge) + draw(st.text(letters + "-", max_size=10)) + draw(edge)


ports = st.one_of(st.just(""), st.integers(0, 99999).map(lambda p: f":{p}"),
                  st.text("0123456789", min_size=1, max_size=8).map(lambda p: f":{p}"))
_ipv6_part = st.text("0123456789abcdefABCDEF:", max_size=19)
ipv6 = st.builds(lambda a, b: f"[{a}:{b}]", _ipv6_part, _ipv6_part)
hosts = st.one_of(
    st.lists(domain_components(), min_size=1, max_size=4).map(".".join),
    st.sampled_from(["localhost", "docker.io", "index.docker.io", "INDEX.docker.io",
                     "registry-1.docker.io", "127.0.0.1"]),
    ipv6,
)
tags = st.builds(lambda first, rest: first + rest, st.sampled_from(_WORD),
                 st.text(_WORD + ".-", max_size=127))
digests = st.sampled_from(sorted(DIGEST_LENGTHS)).flatmap(
    lambda algorithm: st.binary(min_size=DIGEST_LENGTHS[algorithm] // 2,
                                max_size=DIGEST_LENGTHS[algorithm] // 2).map(
        lambda raw: f"{algorithm}:{raw.hex()}"))


maybe_domains = st.none() | st.builds(str.__add__, hosts, ports)
component_lists = st.lists(path_components | hex64, min_size=1, max_size=4)
maybe_tags = st.none() | tags
maybe_digests = st.none() | digests


def looks_like_domain(component: str) -> bool:
    return (component == "localhost" or "." in component or ":" in component
            or component.lower() != component)


@st.composite
def references(draw: st.DrawFn) -> Generated:
    """A valid reference, with the registry, path, tag and digest docker reads from it."""
    domain = draw(maybe_domains)
    components = draw(component_lists)
    if domain is None and looks_like_domain(components[0]):
        components[0] = components[0].replace(".", "-")  # else it would be the registry
        if components[0] == "localhost":
            components[0] = "localhosts"
    tag, digest = draw(maybe_tags), draw(maybe_digests)
    path = "/".join(components)
    registry = HUB_REGISTRY if domain is None else domain.lower()
    if not (domain is None or looks_like_domain(domain)):  # a plain name is a Hub path
        registry, path = HUB_REGISTRY, f"{domain}/{path}"
    if registry == "index.docker.io":
        registry = HUB_REGISTRY
    if registry == HUB_REGISTRY and "/" not in path:
        path = "library/" + path
    name = "/".join(components) if domain is None else f"{domain}/{'/'.join(components)}"
    text = name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
    if len(path) > 255 or (len(text) == 64 and all(c in "0123456789abcdef" for c in text)):
        reject()  # too long, or an image id: valid grammar, refused by design (tested below)
    only_case = domain is not None and domain != domain.lower() and not looks_like_domain(
        domain.lower())
    return Generated(text=text, round_trips=not only_case,
                     expected=ImageReference(registry=registry, path=path, tag=tag,
                                             digest=digest))


reference_alphabet = st.sampled_from([*_WORD, *".-:/@[]+", "ü", " ", "\n", "\0", "\ud800"])
garbage = st.one_of(
    st.text(),
    st.text(reference_alphabet, max_size=80),
    st.builds(lambda g, cut, insert: g.text[:cut] + insert + g.text[cut + 1:],
              references(), st.integers(0, 300), st.text(reference_alphabet, max_size=3)),
    st.builds(lambda size, char: char * size, st.integers(200, 100_000),
              st.sampled_from(["a", "A", "/", ":", "-", "a/", "a:", "@", "a-"])),
)
