"""The services: what editors, reviewers and admins do, and the read models every interface renders.

Each service takes a Session and commits nothing itself: the caller (a CLI command, an API route, a Celery task)
owns the transaction, and wake-ups for workers go out after it commits (:func:`core.db.after_commit`). Errors
are :mod:`core.errors`, one line each. This package re-exports the services, so an interface reads
``services.create_post(...)``; each lives in the module named for what it works on.
"""

from publisher.services.accounts import (
    add_account,
    check_new_account,
    check_new_credentials,
    find_account,
    reauthorize_account,
)
from publisher.services.common import LABEL_MAX, NAME_MAX, REASON_MAX, URL_MAX, audit, get, notify_owner
from publisher.services.organizations import ensure_organization, ensure_user
from publisher.services.posts import SUMMARY_MAX, TARGETS_MAX, TITLE_MAX, create_post, edit_post, submit_post
from publisher.services.reviews import review
from publisher.services.schedules import retry_post, schedule_post
from publisher.services.screening import requeue_stale_screenings, screen_version
from publisher.services.terms import TERM_MAX, add_moderation_term
from publisher.services.views import (
    LIST_MAX,
    account_rows,
    deliveries_of,
    delivery_summary,
    hit_context,
    latest_metrics,
    latest_screening,
    notification_rows,
    post_detail,
    post_rows,
    post_summary,
    review_queue,
)

__all__ = [
    "LABEL_MAX",
    "LIST_MAX",
    "NAME_MAX",
    "REASON_MAX",
    "SUMMARY_MAX",
    "TARGETS_MAX",
    "TERM_MAX",
    "TITLE_MAX",
    "URL_MAX",
    "account_rows",
    "add_account",
    "add_moderation_term",
    "audit",
    "check_new_account",
    "check_new_credentials",
    "create_post",
    "deliveries_of",
    "delivery_summary",
    "edit_post",
    "ensure_organization",
    "ensure_user",
    "find_account",
    "get",
    "hit_context",
    "latest_metrics",
    "latest_screening",
    "notification_rows",
    "notify_owner",
    "post_detail",
    "post_rows",
    "post_summary",
    "reauthorize_account",
    "requeue_stale_screenings",
    "retry_post",
    "review",
    "review_queue",
    "schedule_post",
    "screen_version",
    "submit_post",
]
