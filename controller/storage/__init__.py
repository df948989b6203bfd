"""Shared storage for credential bundles: the port (``base``), the table of backends
(``backends``) and its stores (``fs``, ``s3``; ``memory``, in tests). Only the
wiring (``controller.wiring``) imports a store, by the factory its backend's entry names."""
