"""The Docker Registry HTTP API V2 client: may a credential log in to a registry, may it pull an
image (``RegistryLogin``).

* ``login``: ``RegistryLogin``, the steps of a login and of an image check (the module
  docstring says what they ask and what each answer means);
* ``tokens``: the ``Authorization`` that answers a login challenge (Basic, or a bearer token);
* ``trust``: the CA trust, and which token services may get the credential;
* ``wire``: one request, and what its status means;
* ``challenges``: ``WWW-Authenticate`` parsing (pure);
* ``results``: the outcomes, the results, and the ports they answer for.

Every answer is bounded (a token answer or error body to 64 KiB, a challenge to 4 KiB, a
``detail`` to ``DETAIL_LIMIT`` characters), and ``detail`` never holds a secret, a token, a
response body or a URL's user info, path or query.
"""
