"""Dead-letter replay: ``streamproc dlq replay`` writes selected dead letters back to be scored.

``selection`` (which dead letters, what is written) and ``pacing`` (the rate limit) are pure;
``replay`` is the Kafka loop; ``report`` formats progress and the summary; ``command`` is the
command line.
"""
