"""The kernel: what every package of media-matrix may use, and which imports none of them.

* :mod:`core.settings` – the one typed settings object (``MATRIX_*`` environment variables, ``.env``)
* :mod:`core.db` – the database engine, the session scope, the declarative base and shared column types,
  and :func:`core.db.after_commit` (work that waits for a commit)
* :mod:`core.clock` – times: stored in UTC, shown and parsed in the configured zone
* :mod:`core.errors` – the root error and its one-line, status-carrying subclasses
* :mod:`core.broker` – the *send* side of the broker: task names in one place, :func:`core.broker.enqueue`
* :mod:`core.crypto` – secrets at rest: keys derived with HKDF, rotation with ``MultiFernet``
* :mod:`core.notify` – notifications for people, not tied to any one kind of object
* :mod:`core.ratelimit` – rate limits shared by threads, processes and machines

The rule of this layer: ``core`` imports the standard library and third-party libraries only.
"""
