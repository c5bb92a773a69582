"""Every internal event of the gateway: its log line and its metric, in one place.

One module per area, each event's log line beside its metric: ``messages`` (each message
and field: the hot path, plain dicts turned into counters at scrape time), ``sinks`` (sinks
and their spools), ``source`` (the MQTT source and its broker's `$SYS`), ``control``
(policy, consent, erasure, retention, the held store). ``events.Events`` is all of them on
one object. Labels are bounded: product and kind come from the loaded policies (or
`_unknown`), fields from declared paths, undeclared fields from a fixed vocabulary.
No label and no log line ever carries a value from a message.
"""

from gateway.internal_events.base import emit, log
from gateway.internal_events.events import Events
from gateway.internal_events.messages import KNOWN_KEYS, OTHER, UNKNOWN, undeclared_label

__all__ = ["KNOWN_KEYS", "OTHER", "UNKNOWN", "Events", "emit", "log", "undeclared_label"]
