"""Marathon REST client: a thin aiohttp wrapper that maps HTTP failures onto ``controller.errors``.

What it knows about real Marathon (``docs/marathon.md``): how a version writes an app is its
``Dialect`` (``controller.dialect``), read from ``/v2/info`` once; a 409 body names the
deployments that lock the app; standbys proxy or redirect to the leader, whose address every
response carries in ``X-Marathon-Leader``; the event stream wants ``Accept: text/event-stream``
exactly. Only idempotent reads are retried here; writes are retried by the work queue.

Nothing a response says is trusted blindly: credentials go only to the configured URLs, a 404
means "gone" only in Marathon's own words, bodies are bounded in size and checked in shape,
and every failure is named in words an operator reads.

One concern a module: ``api`` (the port and the request observer), ``client``
(``MarathonClient``: requests, retries, the API methods, the event stream), ``leaders`` (which
URL a request goes to, redirects, ``X-Marathon-Leader``), ``urls`` (what a URL names),
``auth`` (the ``Authorization`` header), ``body`` (answers read within a size limit),
``answers`` (a status and Marathon's error body as ``controller.errors``), ``shapes`` (an
answer's JSON checked in shape), ``network`` (a failure on the wire, in words), ``text`` (JSON
read without trust, values in words).
"""
