"""Forwarding alerts to SIEMs and queues: the outbox, sinks, renderings, retries."""
