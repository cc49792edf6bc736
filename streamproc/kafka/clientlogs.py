"""librdkafka's own log lines, carried into streamproc's structured logs.

Left alone, librdkafka prints its log lines (``%4|1764...|GETPID|rdkafka#producer-1| ...``)
straight to the process's stderr: they break into a terminal view such as the demo's, and they
skip the JSON format and the redaction of every other log line. Every Kafka client streamproc
creates is given ``logger=client_logger()`` instead. confluent-kafka then queues the lines and
hands each to that stdlib logger from the client's own ``poll``/``consume``/``flush`` calls,
and the handler below re-emits it as the structlog event ``kafka_client_log`` with the
librdkafka facility, the client's name and the text, wherever structlog is configured to
write (stderr for ``streamproc run``, the log file for the demo).
"""

from __future__ import annotations

import logging
from typing import Final

from streamproc.logs import get_logger

LOGGER_NAME: Final = "streamproc.kafka.client"
EVENT: Final = "kafka_client_log"


class _ToStructlog(logging.Handler):
    """Re-emits confluent-kafka's ``logger.log(level, "%s [%s] %s", fac, name, text)`` calls."""

    def emit(self, record: logging.LogRecord) -> None:
        # Looked up per line (rare) rather than once, so a later logs.configure() applies.
        log = get_logger("kafka.client")
        args = record.args
        if isinstance(args, tuple) and len(args) == 3:
            facility, client, text = (str(a) for a in args)
            log.log(record.levelno, EVENT, facility=facility, client=client, message=text)
        else:  # not confluent-kafka's shape: keep the text as it came
            log.log(record.levelno, EVENT, message=record.getMessage())


def client_logger() -> logging.Logger:
    """The logger to pass as ``logger=`` to every Consumer, Producer and AdminClient."""
    logger = logging.getLogger(LOGGER_NAME)
    if not any(isinstance(h, _ToStructlog) for h in logger.handlers):
        logger.addHandler(_ToStructlog())
        logger.setLevel(logging.DEBUG)  # structlog's own level decides what is written
        logger.propagate = False  # the root logger may write to the same place: once is enough
    return logger
