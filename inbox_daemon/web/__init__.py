"""The HTTP side of the queue: the JSON API, the queue page and the health probes."""
