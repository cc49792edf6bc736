"""streamproc: real-time fraud scoring of Kafka events by Automation 360 API Tasks."""

__version__ = "0.1.0"
