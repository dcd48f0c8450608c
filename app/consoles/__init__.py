"""The console processes (``ansim consoles``): the console WebSocket, apart from the intake.

Each reads the console log from Redis and serves ``WS /v1/console/stream`` (the same code as the
API's, app/api/console_stream.py), plus ``/healthz``, ``/readyz`` and ``/metrics``. Run any
number beside the API (docs/operations.md)."""
