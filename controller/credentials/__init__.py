"""Registry credential sources: the port (``base``), the table of credential kinds (``kinds``)
and its sources (``password``, ``dockerconfig``, ``helper``, ``ecr``). Only the wiring
(``controller.wiring``) imports a source, by the factory its kind's entry names."""
