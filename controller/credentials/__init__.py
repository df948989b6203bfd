"""Registry credential sources: the port (``base``) and its sources (``password``,
``dockerconfig``, ``helper``, ``ecr``). Only the wiring (``controller.wiring``) picks a source."""
