"""The one exception tree of ``publisher``.

::

    PublisherError          root; ``str(exc)`` is a one-line message fit for a user
    ├── NotFound            no such post / account / delivery (API: 404)
    ├── InvalidInput        bad input: unparseable time, time in the past, empty or oversize body (API: 422)
    └── Conflict            the object is in the wrong state for this (API: 409)
        └── IllegalTransition   (publisher.lifecycle) a state change the lifecycle does not allow
"""


class PublisherError(Exception):
    """Root of the publisher's errors."""

    status_code = 400


class NotFound(PublisherError):
    status_code = 404


class InvalidInput(PublisherError):
    status_code = 422


class Conflict(PublisherError):
    status_code = 409
