"""The root error of media-matrix and the kinds every package shares.

::

    MatrixError             root; ``str(exc)`` is a one-line message fit for a user; ``status_code`` for HTTP
    ├── Unauthenticated     no identity, or one that does not hold (API: 401)
    │   └── LockedOut           (publisher.services.people) too many failed sign-ins; says when to retry
    ├── Forbidden           an identity that may not do this, here (API: 403)
    ├── NotFound            no such post / account / delivery (API: 404)
    ├── InvalidInput        bad input: unparseable time, time in the past, empty or oversize body (API: 422)
    ├── Conflict            the object is in the wrong state for this (API: 409)
    │   └── IllegalTransition   (publisher.domain.lifecycle) a state change the lifecycle does not allow
    └── ConfigError         the installation is misconfigured (a secret key that cannot decrypt, say)

Packages that stand alone (``moderation``, ``channels``) keep their own trees; the interfaces translate them.
"""

from __future__ import annotations


class MatrixError(Exception):
    """Root of media-matrix's errors."""

    status_code = 400


class Unauthenticated(MatrixError):
    """Nobody is signed in, or the credential given is unknown, expired or revoked."""

    status_code = 401


class Forbidden(MatrixError):
    """The person acting may not do this (here); the message says which role on which organisation it takes."""

    status_code = 403


class NotFound(MatrixError):
    """No such object."""

    status_code = 404


class InvalidInput(MatrixError):
    """The input cannot be used as given."""

    status_code = 422


class Conflict(MatrixError):
    """The object is in the wrong state for this."""

    status_code = 409


class ConfigError(MatrixError):
    """The installation is misconfigured; an operator must act."""

    status_code = 500
