"""The monitor's task names and how producers send them: by name, on the monitor's own queue.

As :mod:`core.broker` does for the publisher: messages are wake-ups (the database says what is due, and beat's
``monitor.poll_due`` finds a source again if a message is lost); producers never import ``workers``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from core.broker import sender_app
from monitor.settings import MonitorSettings, monitor_queue


class MonitorTask(StrEnum):
    """Every monitor task's name: the contract between the producers and ``workers.monitor_tasks``."""

    POLL_DUE = "monitor.poll_due"
    POLL_SOURCE = "monitor.poll_source"
    POLL_SOURCES = "monitor.poll_sources"  # a chunk of what poll_due claimed (MonitorSettings.poll_chunk)
    SEND_ALERT = "monitor.send_alert"
    SEND_DUE = "monitor.send_due"
    DETECT_BURSTS = "monitor.detect_bursts"
    SEND_REPORTS = "monitor.send_reports"
    SEND_REPORT = "monitor.send_report"


def celery_config(settings: MonitorSettings) -> dict[str, Any]:
    """What the worker app adds for the monitor: its tasks routed to its queue, and beat's poller."""
    queue = monitor_queue(settings)
    return {
        "task_routes": {"monitor.*": {"queue": queue}},
        "beat_schedule": {
            "monitor-poll-due": {
                "task": MonitorTask.POLL_DUE.value,
                "schedule": settings.poll_interval_s,
                "options": {"queue": queue},
            },
            "monitor-detect-bursts": {
                "task": MonitorTask.DETECT_BURSTS.value,
                "schedule": settings.burst_interval_s,
                "options": {"queue": queue},
            },
            "monitor-send-due": {
                "task": MonitorTask.SEND_DUE.value,
                "schedule": settings.alert_send_interval_s,
                "options": {"queue": queue},
            },
            "monitor-send-reports": {
                "task": MonitorTask.SEND_REPORTS.value,
                "schedule": settings.report_send_interval_s,
                "options": {"queue": queue},
            },
        },
    }


def enqueue(task: MonitorTask, *args: Any, settings: MonitorSettings | None = None) -> None:
    """Send one monitor task to the monitor's queue (through :func:`core.db.after_commit` in a transaction)."""
    sender_app().send_task(str(task), args=list(args), queue=monitor_queue(settings))
