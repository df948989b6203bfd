"""Shared storage for credential bundles: the port (``base``) and its backends (``fs``, ``s3``,
``memory``). Only the wiring (``controller.wiring``) picks a backend."""
