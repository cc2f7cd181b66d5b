"""The publisher: posts from draft to every platform and back.

Layers, each importing only those below it (checked by the import contracts in ``pyproject.toml``)::

    interfaces   the HTTP API and the CLI
    delivery     the engine: dispatch, deliver, reconcile, metrics, retract, assisted deliveries
    services     what people do, and the read models every interface renders
    domain       the data model and the lifecycle tables

All of them may use :mod:`core` (the kernel), :mod:`channels` (the adapters) and :mod:`moderation`.
"""
