"""A handler module that cannot be imported: initialization fails."""

raise RuntimeError("this module cannot be imported")


def handle(event, context):  # pragma: no cover - never reached
    return event
