"""Adapters around confluent-kafka: consumer, producer, plain record types, topic administration.

They keep librdkafka objects and errors at this edge, so the processor works with plain
records and the error tree.
"""
