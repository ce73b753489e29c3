"""The one exception tree of sipdata, and the HTTP status each branch maps to.

    SipdataError
    ├── ConfigError                    bad environment: start-up stops (no HTTP)
    ├── InputError                     400: the caller sent something malformed
    │   ├── ImportFileError            a rate-deck row is invalid (line + field)
    │   └── NotFound                   404: the request names something that does not exist
    ├── Unauthorized                   401: the shared secret or API key is missing or wrong
    ├── Forbidden                      403: the API key lacks the scope (never for
    │                                  another org's rows: those are 404)
    ├── Conflict                       409: the write contradicts existing data
    ├── PreconditionFailed             412: If-Match names an older version
    ├── PreconditionRequired           428: an update without If-Match
    ├── RateLimited                    429: the API key's requests per minute are used up
    ├── PayloadTooLarge                413: request body over the cap
    ├── UnsupportedMediaType           415: a body that is not application/json
    ├── StoreRejected                  422: the database refused the data itself (a
    │                                  constraint, a type, a value out of range):
    │                                  retrying the same write can never succeed
    └── Unavailable                    503: infrastructure, never an auth verdict
        ├── CacheUnavailable           Redis refused, timed out or was unreachable
        │   └── ConsumerGroupLost      a report stream's consumer group is gone
        │                              (Redis restarted empty): recreate it
        ├── StoreUnavailable           the database refused, timed out or was away
        ├── DeadlineExceeded           the answer could not be built in time
        └── Overloaded                 more decisions in flight than the process holds

Library errors (redis, asyncpg) are translated into these in `cache/` and
`db/`, the only folders that touch those libraries, so nothing above them
ever has to know which client raised.
"""

from __future__ import annotations


class SipdataError(Exception):
    """Base of every error sipdata raises on purpose."""

    status = 500
    code = "internal"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class ConfigError(SipdataError):
    """A setting is missing or malformed; the message names the variable."""

    code = "config"


class InputError(SipdataError):
    """The request (or file) is malformed; `field` names the offending part."""

    status = 400
    code = "invalid_parameter"


class ImportFileError(InputError):
    """A rate-deck line is invalid; nothing of the file was written."""

    code = "invalid_rate_deck"

    def __init__(self, message: str, *, line: int, field: str | None = None) -> None:
        super().__init__(f"line {line}: {message}", field=field)
        self.line = line


class NotFound(InputError):
    status = 404
    code = "not_found"


class Unauthorized(SipdataError):
    status = 401
    code = "unauthorized"


class Forbidden(SipdataError):
    status = 403
    code = "forbidden"


class Conflict(SipdataError):
    status = 409
    code = "conflict"


class PreconditionFailed(SipdataError):
    status = 412
    code = "precondition_failed"


class PreconditionRequired(SipdataError):
    status = 428
    code = "precondition_required"


class RateLimited(SipdataError):
    """Answered with Retry-After: the seconds until the key's window ends."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PayloadTooLarge(SipdataError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(SipdataError):
    status = 415
    code = "unsupported_media_type"


class StoreRejected(SipdataError):
    """The database refused this data for good (SQLSTATE class 22 or 23); `sqlstate`
    says which rule. A drainer dead-letters the report instead of retrying it."""

    status = 422
    code = "rejected_by_database"

    def __init__(self, message: str, *, sqlstate: str = "", field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.sqlstate = sqlstate


class Unavailable(SipdataError):
    """Infrastructure trouble. Kamailio answers 503 for this, never 401/403."""

    status = 503
    code = "unavailable"


class CacheUnavailable(Unavailable):
    code = "redis_unavailable"


class ConsumerGroupLost(CacheUnavailable):
    code = "redis_unavailable"


class NotReplicated(CacheUnavailable):
    """The primary took the write but fewer replicas than SIPDATA_REDIS_REPLICAS_ACK
    confirmed it in time: not acknowledged, so the sender keeps it and sends it again."""

    code = "redis_not_replicated"


class StoreUnavailable(Unavailable):
    code = "database_unavailable"


class DeadlineExceeded(Unavailable):
    code = "deadline_exceeded"


class Overloaded(Unavailable):
    """More decisions in flight than the process may hold: answered 503 at once."""

    code = "overloaded"


class WarmFailed(Unavailable):
    """A full load did not finish (its child process failed, or the warmer lock was
    lost under it): the previous generation keeps serving, the follower retries."""

    code = "warm_failed"


class SchemaOutdated(StoreUnavailable):
    """The database lacks what this release needs (a migration not yet run): said
    plainly, so an operator reads the fix rather than a traceback."""

    code = "schema_outdated"
