"""channels_redis's receive-task log, folded into the app's one line per Redis outage.

``RedisPubSubChannelLayer`` reads each host's subscription in a task of its own;
while Redis is down that task logs ``Unexpected exception in receive task`` with
a traceback once a second, per host, for as long as the outage lasts, naming
neither the cause nor the fix. The message and the logger's name are
channels_redis's internals, so the filter here is installed only for the
versions the suite has run against (:func:`~.versions.version_is_tested`); on any
other it is not, and channels_redis logs as it always did.

The filter drops a record of that message whose exception is a Redis outage
(:func:`~django_sse_exec.outages.report` counts it, and logs the outage's one
error if it is the first sign of it); every other record passes unchanged.
"""

from __future__ import annotations

import logging

from ...outages import report
from .versions import version_is_tested

#: The logger and the message of channels_redis's pub/sub receive task.
LOGGER = "channels_redis.pubsub"
MESSAGE = "Unexpected exception in receive task"


class ReceiveTaskOutages(logging.Filter):
    """Drops channels_redis's receive-task errors that are a Redis outage (reported instead)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != MESSAGE or not record.exc_info or record.exc_info[1] is None:
            return True
        return not report(record.exc_info[1], "channels_redis's receive task")


_filter = ReceiveTaskOutages()


def fold_receive_task_logs() -> bool:
    """Install the filter on channels_redis's logger (once); False when its version is untested."""
    if not version_is_tested():
        return False
    logger = logging.getLogger(LOGGER)
    if _filter not in logger.filters:
        logger.addFilter(_filter)
    return True


__all__ = ["LOGGER", "MESSAGE", "ReceiveTaskOutages", "fold_receive_task_logs"]
