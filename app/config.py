"""Settings from the environment: prefix ``ANSIM_``, plus ``DATABASE_URL`` and ``REDIS_URL``."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PLACEHOLDER = "change-me"


class EscalationStep(BaseModel):
    """One level of the escalation ladder after the first."""

    model_config = ConfigDict(extra="forbid")

    after_s: float = Field(gt=0)
    page: bool = False


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ANSIM_", env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    database_url: str = Field(
        "postgresql://postgres@127.0.0.1:5432/ansim",
        validation_alias=AliasChoices("ANSIM_DATABASE_URL", "DATABASE_URL"),
    )
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("ANSIM_REDIS_URL", "REDIS_URL"),
    )
    db_pool_size: int = 20
    db_max_overflow: int = 10
    #: Connections of each process's raw asyncpg pool (the SOS, device and dispatch hot paths),
    #: all opened at start and kept: a request must never wait for a new connection to be
    #: made and warmed up (~50-170 ms with PostGIS), which stalled the first second of every
    #: step up in load. Ten per process is already more than two cores of PostgreSQL can use.
    db_hot_pool_size: int = 10
    #: A statement that has not answered by then fails (503), so a black-holed connection to
    #: PostgreSQL cannot hang a request; connecting gives up sooner.
    db_command_timeout_s: float = 30.0
    db_connect_timeout_s: float = 5.0
    #: Time zone used to decide whether a safe place is open now.
    local_timezone: str = "Asia/Seoul"

    # Analytics (app/analytics/)
    #: Heat-map cells with fewer incidents than this are not shown (k-anonymity of places); a
    #: request may ask for a larger k, never a smaller one.
    analytics_k: int = Field(5, ge=2)
    #: How often a dispatcher refreshes the analytics view of the incidents (0: never; then
    #: ``ansim analytics refresh`` from cron).
    analytics_refresh_s: float = Field(600.0, ge=0)

    # Intake
    max_body_bytes: int = 64 * 1024
    nearest_default_limit: int = 5
    #: A location fix worse than this (metres) is accepted but flagged as poor.
    poor_accuracy_m: float = 200.0
    #: A fix older than this (seconds) when the SOS arrives is flagged as stale.
    stale_location_s: float = 300.0
    #: A member's new SOS while her alert is open (and younger than this) joins that alert.
    sos_fold_window_s: float = 600.0
    #: Wrong cancel PINs in a row that escalate the incident.
    max_wrong_pins: int = 3
    #: After this many wrong cancel PINs in a row every cancel is refused (429) for
    #: ``cancel_pin_lockout_s``, so a 4-digit PIN cannot be guessed; the alert stays open.
    cancel_pin_lockout_after: int = Field(5, ge=1)
    cancel_pin_lockout_s: float = Field(900.0, gt=0)
    #: Her export shows an alert she cancelled as it stood at her cancel until it has been
    #: closed this long: what was written after (police at work on a duress cancel) would tell
    #: a duress cancel from a real one to whoever holds her phone.
    cancel_hold_s: float = Field(7 * 24 * 3600.0, ge=0)

    # Devices (panic buttons)
    device_clock_skew_s: int = 300
    #: Redis key prefix for seen device nonces (kept for twice the clock-skew window).
    device_nonce_prefix: str = "ansim:device-nonce:"
    #: A button's ``cancel`` reaches its open incident received at most this long ago.
    device_cancel_window_s: int = 300
    #: A panic's ``signal_id`` folds retries into one incident while that incident is open or
    #: younger than this; reused later (a firmware bug), it raises a new, flagged incident.
    device_signal_id_ttl_s: int = 3600
    #: A press on a button whose alert is still open (and younger than this) joins that alert.
    device_fold_window_s: float = 600.0
    #: A button whose last heartbeat is older than this is reported offline (once per outage)
    #: on its district's consoles; dispatchers check every ``device_offline_check_s``.
    device_offline_after_s: float = 900.0
    device_offline_check_s: float = 30.0

    # Homes (app/homes/): a door opened while armed away raises an alarm this long after,
    # unless she disarms first; dispatchers look for expired delays every
    # ``home_entry_check_s``.
    home_entry_delay_s: float = Field(30.0, gt=0, le=600)
    home_entry_check_s: float = Field(1.0, gt=0)

    # Alarm-panel receiver (SIA DC-09, ``ansim receiver``; docs/alarm-panels.md)
    receiver_host: str = "0.0.0.0"
    #: TCP and UDP on the same port.
    receiver_port: int = Field(9000, ge=0, le=65535)
    #: A TCP line not finished this long after its first byte cuts the connection (slowloris).
    receiver_line_timeout_s: float = Field(10.0, gt=0)
    #: A TCP connection silent this long is closed (a panel opens a new one).
    receiver_idle_timeout_s: float = Field(120.0, gt=0)
    #: A line longer than this cuts the connection (a DC-09 frame is a few hundred bytes).
    receiver_max_line_bytes: int = Field(4096, ge=256)
    #: UDP messages handled at once; more are dropped (the panel retries).
    receiver_udp_concurrency: int = Field(256, ge=1)
    #: An account's supervision interval when the operator gives none: silent this long, the
    #: panel is reported offline on its district's consoles.
    alarm_supervision_s: float = Field(1800.0, gt=0)

    # Privacy
    #: How long the trail of a closed incident is kept (default 30 days).
    trail_retention_s: float = 30 * 24 * 3600
    retention_interval_s: float = 3600
    #: Processed outbox rows (and their dispatch receipts) are deleted after this (7 days);
    #: keep it longer than ``relay_reconcile_window_s``.
    outbox_retention_s: float = 7 * 24 * 3600
    #: Redis copies of her position, trimmed by age in the same job (app/dispatch/
    #: stream_retention.py; docs/security.md "Where her position is held"): entries of the
    #: incidents stream every consumer group has processed, after a day (never one still
    #: pending or undelivered); the console log after a day (a console reconnecting with an
    #: older cursor gets a snapshot instead of a replay); dead letters, for people to look at,
    #: after a week. Each must be shorter than ``trail_retention_s``.
    stream_retention_s: float = Field(24 * 3600, gt=0)
    console_retention_s: float = Field(24 * 3600, gt=0)
    dead_letter_retention_s: float = Field(7 * 24 * 3600, gt=0)

    # Abuse limits (never applied to raising an alert)
    rate_limit_per_credential_per_min: int = 600
    rate_limit_per_ip_per_min: int = 3000
    rate_limit_login_per_ip_per_min: int = 20
    #: Wrong TOTP or recovery codes an account may send in a minute (app/security/signin.py).
    rate_limit_second_factor_per_min: int = Field(5, ge=1)
    #: Her app's sign-in by a one-time code (app/security/member_signin.py): how long a code
    #: lives, how many wrong codes a phone may send before every code for it is refused for
    #: that long, and how many codes a phone number and an address may ask for in an hour.
    member_code_ttl_s: float = Field(600.0, gt=0, le=3600)
    member_code_max_attempts: int = Field(5, ge=1)
    member_code_per_phone_per_hour: int = Field(5, ge=1)
    member_code_per_ip_per_hour: int = Field(20, ge=1)
    #: Proxies whose ``X-Forwarded-For`` names the client, as IPs or CIDRs separated by commas
    #: (``ANSIM_TRUSTED_PROXIES=10.0.0.0/8,192.0.2.7``); from any other peer the header is
    #: ignored (app/security/client_ip.py). Default: none, the peer is the client.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    #: Prefix for every Redis key this service writes (streams excepted: they are named).
    redis_prefix: str = "ansim:"

    # Metrics (app/metrics.py, docs/operations.md)
    #: ``GET /metrics`` wants ``Authorization: Bearer <this>`` when set (Prometheus'
    #: ``authorization`` scrape setting). Unset, it is open in development and test and
    #: refused in production: it holds no personal data, but its gauges tell when nobody
    #: watches a district.
    metrics_token: str | None = None
    #: Bound on the queries the scrape-time gauges run (PostgreSQL and Redis, side by side).
    metrics_query_timeout_s: float = Field(2.0, gt=0)
    #: A dispatcher's own ``/metrics`` (prometheus-client's HTTP server; 0: none). With
    #: ``ansim serve --dispatchers M`` the i-th dispatcher listens on this port + i.
    dispatcher_metrics_port: int = Field(0, ge=0, le=65535)
    #: ``ansim relay``'s own ``/metrics`` (0: none).
    relay_metrics_port: int = Field(0, ge=0, le=65535)
    #: Where those listen: keep it on a private interface (no token is asked there).
    metrics_host: str = "127.0.0.1"

    # Logs (app/logs.py, docs/operations.md "Logs")
    #: ``json``: one JSON object a line (time, level, logger, message and the record's fields).
    log_format: Literal["text", "json"] = "text"

    # Staff sessions
    staff_token_ttl_s: int = 12 * 3600

    # Stream / dispatch
    stream_incidents: str = "ansim:incidents"
    stream_maxlen: int = 1_000_000
    stream_group: str = "dispatchers"
    stream_dead_letter: str = "ansim:incidents:dead"
    console_stream: str = "ansim:console"
    console_maxlen: int = 100_000
    console_max_lifetime_s: float = 3600.0
    console_ping_s: float = 15.0
    #: Open incidents in a console's snapshot at most, the most urgent first (duress, escalated,
    #: silent, then the oldest unacknowledged): in a flood the limit drops the least urgent.
    console_snapshot_max: int = Field(1000, ge=1)
    #: With many consoles on an API process (``console_log.LINGER_MIN_CONSOLES``), its console
    #: hub waits this long after a read that found entries: under load the next ones then go out
    #: together (one wake-up and one frame per batch console), for at most this much latency.
    #: The first entry after a quiet spell is never held. 0: read again at once.
    console_linger_s: float = 0.02
    #: Each API process refreshes its open consoles in Redis this often; a console of a process
    #: that died counts no longer after the TTL (app/dispatch/coverage.py).
    console_presence_refresh_s: float = 5.0
    console_presence_ttl_s: float = 15.0
    #: Where the console page opens its WebSocket: empty for its own origin (a load balancer
    #: sends ``/v1/console/stream`` to the ``ansim consoles`` processes), else a ``ws://`` or
    #: ``wss://`` URL of the console processes (``ansim serve`` sets it to the one it starts).
    console_stream_url: str = ""
    #: The API process serves the console WebSocket too (one-process setups, a load balancer
    #: that sends everything to the API). Off: the API is intake only, ``ansim consoles`` serve.
    api_console_stream: bool = True
    #: How often every dispatcher gives incidents nobody watches to the consoles that are open.
    coverage_poll_s: float = 0.5
    #: Districts whose boundaries are within this (degrees, ~50 m) are neighbours: simplified
    #: boundaries leave slivers between districts that touch.
    coverage_neighbour_tolerance: float = 0.0005
    relay_sweep_interval_s: float = 1.0
    relay_batch: int = 500
    #: Published outbox rows no dispatcher processed after this long (lost with Redis) are
    #: published again; rows older than the window are left alone (see relay.republish_unrouted).
    relay_reconcile_after_s: float = 60.0
    relay_reconcile_window_s: float = 24 * 3600.0
    #: An SOS routed at intake gets its ``dispatch_receipt`` from a batch the API process
    #: writes this often (one statement for all of them; see ``OutboxRelay.publish``).
    relay_receipt_flush_s: float = 0.2
    dispatch_concurrency: int = 32
    dispatch_claim_idle_s: float = 5.0
    dispatch_max_deliveries: int = 5
    dispatch_drain_s: float = 10.0
    #: The escalation ladder (app/dispatch/routing.py). A new incident nobody acknowledged in
    #: ``ack_deadline_s`` goes to level 1 (an alarm on its consoles and the city-wide ones); each
    #: step of ``escalation_ladder`` is the next level, ``after_s`` after the one before, paging
    #: the on-call supervisors where it says so; after the last step the on-call supervisors are
    #: paged again every ``escalation_repeat_s`` (0: never) until someone acknowledges it.
    #: ``ANSIM_ESCALATION_LADDER='[{"after_s": 30, "page": true}, ...]'``.
    ack_deadline_s: float = 15.0
    escalation_ladder: list[EscalationStep] = Field(
        default_factory=lambda: [
            EscalationStep(after_s=30.0, page=True),
            EscalationStep(after_s=60.0, page=True),
        ]
    )
    escalation_repeat_s: float = 120.0
    #: The stages after the acknowledgement: an acknowledged incident must have a unit
    #: responding within ``respond_deadline_s``, a responding one be on scene within
    #: ``on_scene_deadline_s``; each overdue stage escalates once and pages (0: no deadline).
    respond_deadline_s: float = 300.0
    on_scene_deadline_s: float = 900.0
    deadline_poll_s: float = 0.5
    #: Volunteers: how many are offered, how many are needed, where to look.
    volunteer_geo_key: str = "ansim:volunteers:geo"
    volunteer_seen_key: str = "ansim:volunteers:seen"
    volunteer_radius_m: float = 1000.0
    volunteer_radius_growth: float = 2.0
    volunteers_offered: int = 5
    volunteers_needed: int = 2
    volunteer_stale_s: float = 120.0
    #: A phone SOS and a button press this close in space and time are one emergency.
    link_radius_m: float = 300.0
    link_window_s: float = 600.0
    #: Push (volunteers) and SMS (guardians, pages) gateways; an empty URL logs the message
    #: instead (development and test only: production refuses to start without both).
    push_gateway_url: str = ""
    sms_gateway_url: str = ""
    gateway_hmac_key: str = PLACEHOLDER

    # Notifications (app/notifications): retried from PostgreSQL until sent or the deadline.
    #: How long a message is retried before it is shown as failed (well past a 10-minute
    #: gateway outage; the fault tests shorten it).
    notify_deadline_s: float = 1800.0
    #: Retry ``n`` waits between half and all of ``min(cap, base * 2**(n-1))``.
    notify_backoff_base_s: float = 1.0
    notify_backoff_cap_s: float = 60.0
    #: A sender's claim on a message; longer than an HTTP attempt can take.
    notify_lease_s: float = 30.0
    #: How often every dispatcher looks for due messages (a new one is sent at once).
    notify_poll_s: float = 1.0
    notify_batch: int = 50
    notify_concurrency: int = 16
    #: Where the links in messages point (the guardian view).
    public_base_url: str = "http://127.0.0.1:8000"

    # Other agencies (app/interop; docs/interop.md): CAP 1.2 and NENA EIDO exports and
    # subscriptions, delivered through the notification queue above (same backoff, deadline).
    #: This service's identity in the documents: CAP ``sender``, the EIDO agency ``$id`` and
    #: the domain of every EIDO ``urn:emergency:uid:...`` identifier.
    interop_agency_id: str = "ansim.example.kr"
    #: How long an agency's HTTP attempt may take before it is abandoned and retried.
    interop_timeout_s: float = 10.0

    # Maps (the console and the phone simulator; docs/console.md)
    #: A tile server's URL template (Leaflet's: ``https://tiles.example/{z}/{x}/{y}.png``, with
    #: ``{s}`` for subdomains if it has them), e.g. the city's own or VWorld's. Empty (default):
    #: no tiles, the maps draw only our own districts, dongs and places and work offline.
    map_tile_url: str = ""
    #: The attribution the tile server's terms ask for, shown as text on the map.
    map_tile_attribution: str = ""
    #: Draw Seoul's dong boundaries (shipped in app/geo/data/seoul/) faintly under the
    #: districts; a deployment elsewhere turns them off.
    map_dongs: bool = True
    #: The console's cameras and emergency bells around an incident (app/assets; docs/
    #: control-room.md): the radius looked in by default, the most a console may ask for, and
    #: how many of each kind are listed.
    assets_radius_m: float = Field(300.0, gt=0)
    assets_max_radius_m: float = Field(2000.0, gt=0)
    assets_limit: int = Field(10, ge=1, le=50)

    # Safe return, "walk me home" (app/safe_return; docs/safe-return.md). The timers run here,
    # in PostgreSQL (``safe_return_session.next_check_at``), swept by every dispatcher.
    #: Added to her expected arrival before the no-arrival check; "extend" adds it again.
    safe_return_grace_s: float = Field(600.0, gt=0)
    #: No position for this long is a check.
    safe_return_no_position_s: float = Field(300.0, gt=0)
    #: Farther than this from her route for longer than ``off_route_s`` is a check.
    safe_return_corridor_m: float = Field(150.0, gt=0)
    safe_return_off_route_s: float = Field(120.0, gt=0)
    #: Not moving (within ``stationary_m``) for this long, away from the destination, is a check.
    safe_return_stationary_m: float = Field(30.0, gt=0)
    safe_return_stationary_s: float = Field(600.0, gt=0)
    #: A battery under this percentage is a check (asked once).
    safe_return_low_battery_pct: int = Field(5, ge=0, le=100)
    #: A position within this distance of the destination is an arrival.
    safe_return_geofence_m: float = Field(75.0, gt=0)
    #: How long she has to answer "Are you OK?" before it becomes an SOS (1-5 minutes).
    safe_return_ask_s: float = Field(120.0, gt=0)
    #: Walking speed for an arrival time she did not give (and the farthest one she may give).
    safe_return_walking_mps: float = Field(1.2, gt=0)
    safe_return_max_duration_s: float = Field(4 * 3600.0, gt=0)
    #: An expected arrival sooner than this is refused as "in the past".
    safe_return_min_lead_s: float = Field(60.0, ge=0)
    safe_return_route_max_points: int = Field(1000, gt=1)
    #: How often every dispatcher sweeps due checks, and how many rows one statement takes.
    safe_return_sweep_s: float = Field(1.0, gt=0)
    safe_return_sweep_batch: int = Field(500, gt=0)
    #: Saved places per member (a destination she picks by name: home, a friend's).
    saved_places_max: int = Field(20, ge=1)

    # Safe Return Scouts (app/safe_return/scouts.py; docs/safe-return.md): escorts on foot,
    # booked ahead. Each district's hours and lead time are its own (``scout_district``).
    #: A district's lead time unless it sets its own (Seoul: 30 minutes; some districts 20).
    scout_default_lead_s: float = Field(1800.0, ge=0)
    #: Bookings are taken for at most this many days ahead.
    scout_max_days_ahead: int = Field(7, ge=1, le=60)
    #: Scouts not at the meeting point this long after the time: a no-show (she is told).
    scout_no_show_s: float = Field(600.0, gt=0)
    #: A team's time between two escorts (back from the last destination), added to the walk.
    scout_turnaround_s: float = Field(900.0, ge=0)
    #: The "next free slot" offered in a refusal is searched in steps of this much.
    scout_slot_step_s: float = Field(600.0, gt=0)
    #: How early before the meeting time she may start the walk with her scouts.
    scout_start_early_s: float = Field(1800.0, ge=0)

    secret_key: str = PLACEHOLDER

    #: Fault injection for the fault campaign (tests/faults/); only honoured when
    #: ``environment`` is ``test``. ``kill_after_commit``: the SOS handler SIGKILLs its own
    #: process after the incident is committed, before answering.
    fault: str = ""

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list):
            for entry in value:
                try:
                    ipaddress.ip_network(str(entry).strip(), strict=False)
                except ValueError as exc:
                    raise ValueError(f"ANSIM_TRUSTED_PROXIES: {entry!r} is no IP or CIDR") from exc
        return value

    @field_validator("console_stream_url")
    @classmethod
    def _stream_url(cls, value: str) -> str:
        value = value.strip()
        if value and not value.startswith(("ws://", "wss://")):
            raise ValueError("ANSIM_CONSOLE_STREAM_URL must be a ws:// or wss:// URL (or empty)")
        return value

    @field_validator("map_tile_url")
    @classmethod
    def _tile_template(cls, value: str) -> str:
        value = value.strip()
        if value and (
            not value.startswith(("https://", "http://"))
            or not all(p in value for p in ("{z}", "{x}", "{y}"))
        ):
            raise ValueError(
                "ANSIM_MAP_TILE_URL must be an http(s) URL template with {z}, {x} and {y}"
            )
        return value

    @model_validator(mode="after")
    def _refuse_placeholders(self) -> Settings:
        if self.environment not in ("development", "test"):
            for name in ("secret_key", "gateway_hmac_key"):
                if getattr(self, name) == PLACEHOLDER:
                    raise ValueError(f"ANSIM_{name.upper()} must be set outside development")
            for name in ("push_gateway_url", "sms_gateway_url"):
                if not getattr(self, name):
                    # Without it a message would only be logged: nobody would be told.
                    raise ValueError(f"ANSIM_{name.upper()} must be set in production")
        for name in ("stream_retention_s", "console_retention_s", "dead_letter_retention_s"):
            if getattr(self, name) >= self.trail_retention_s:
                raise ValueError(f"ANSIM_{name.upper()} must be shorter than the trail retention")
        if self.console_retention_s < self.console_max_lifetime_s:
            # A console replays from its cursor on every reconnect, at least once a lifetime.
            raise ValueError("ANSIM_CONSOLE_RETENTION_S must cover ANSIM_CONSOLE_MAX_LIFETIME_S")
        if self.fault and self.environment != "test":
            raise ValueError("ANSIM_FAULT is for the test environment only")
        return self

    @property
    def async_database_url(self) -> str:
        """The same database through SQLAlchemy's asyncpg dialect."""
        url = self.database_url
        for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+asyncpg://" + url[len(prefix) :]
        return url

    @property
    def asyncpg_dsn(self) -> str:
        """The database as a plain libpq DSN (for asyncpg itself and psql)."""
        return self.async_database_url.replace("postgresql+asyncpg://", "postgresql://", 1)


@lru_cache
def get_settings() -> Settings:
    return Settings()
