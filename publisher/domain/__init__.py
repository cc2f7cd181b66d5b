"""The domain: the data model (:mod:`~publisher.domain.models`) and the lifecycle tables
(:mod:`~publisher.domain.lifecycle`), the single source of which state change is legal. No I/O here."""
