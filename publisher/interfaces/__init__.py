"""The ways in: the HTTP API (:mod:`~publisher.interfaces.api`) and the ``matrix`` CLI
(:mod:`~publisher.interfaces.cli`), both thin over :mod:`publisher.services` and :mod:`publisher.delivery`."""
