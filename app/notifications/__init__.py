"""Pushes and texts that outlast an outage: queued in PostgreSQL in the transaction that calls
for them, sent by every dispatcher's sender, retried with backoff until the gateway says 2xx
or the deadline passes (then a visible ``notify_failed`` on the incident)."""
