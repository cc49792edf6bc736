"""The pure core of streamproc: decisions about events, with no I/O.

Nothing here reads a clock, draws a random number, opens a socket or logs: time and
randomness are arguments, so every behaviour is reproducible in a direct call. The modules,
one concept each:

- :mod:`.events` decode and validate a record value into a :class:`TransactionEvent`
- :mod:`.mapping` build an API Task's botInput from an event; read its verdict
- :mod:`.routing` choose the API Tasks that score an event
- :mod:`.decisions` combine verdicts, fall back, build the output record and headers
- :mod:`.deadletters` the dead-letter envelope headers
- :mod:`.offsets` committable offsets under out-of-order completion
- :mod:`.ordering` per-key / per-partition ordering of concurrent work
- :mod:`.budgets` per-allocation concurrency budgets
- :mod:`.deadlines` per-event deadlines in event time
- :mod:`.retry` error classification and deadline-aware backoff
- :mod:`.service_time` recent execute durations: the quantile admission plans with
- :mod:`.admission` which waiting event a free slot takes, and which are shed
- :mod:`.circuit` the circuit breaker that stops executes on a dead endpoint
"""

from streamproc.core.budgets import Budget, BudgetResolution, replica_share, resolve_limit
from streamproc.core.deadletters import (
    dead_letter_headers,
    dead_letter_headers_for,
    error_class_name,
)
from streamproc.core.deadlines import deadline_epoch, expired_on_arrival
from streamproc.core.decisions import (
    DecisionRecord,
    FallbackPolicy,
    FallbackReason,
    FallbackRule,
    SourceRef,
    TaskReport,
    combine_verdicts,
    decide,
    fallback_decision,
)
from streamproc.core.events import TransactionEvent, check_path, decode_event
from streamproc.core.mapping import (
    DEFAULT_FRAUD_MAPPING,
    Decision,
    InputVariableSpec,
    OutputSpec,
    TaskMappingSpec,
    TaskVerdict,
    map_bot_input,
    read_task_output,
)
from streamproc.core.offsets import PartitionOffsets, TopicPartition
from streamproc.core.ordering import OrderingGate, OrderingMode
from streamproc.core.retry import RetryPolicy, classify, next_delay
from streamproc.core.routing import (
    CombinePolicy,
    Condition,
    Route,
    RouteRule,
    RoutingSpec,
    check_routing,
)

__all__ = [
    "DEFAULT_FRAUD_MAPPING",
    "Budget",
    "BudgetResolution",
    "CombinePolicy",
    "Condition",
    "Decision",
    "DecisionRecord",
    "FallbackPolicy",
    "FallbackReason",
    "FallbackRule",
    "InputVariableSpec",
    "OrderingGate",
    "OrderingMode",
    "OutputSpec",
    "PartitionOffsets",
    "RetryPolicy",
    "Route",
    "RouteRule",
    "RoutingSpec",
    "SourceRef",
    "TaskMappingSpec",
    "TaskReport",
    "TaskVerdict",
    "TopicPartition",
    "TransactionEvent",
    "check_path",
    "check_routing",
    "classify",
    "combine_verdicts",
    "dead_letter_headers",
    "dead_letter_headers_for",
    "deadline_epoch",
    "decide",
    "decode_event",
    "error_class_name",
    "expired_on_arrival",
    "fallback_decision",
    "map_bot_input",
    "next_delay",
    "read_task_output",
    "replica_share",
    "resolve_limit",
]
