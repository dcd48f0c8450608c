"""Handing incidents to other agencies: OASIS CAP 1.2 and NENA EIDO documents (``cap``,
``eido``, both from one ``snapshot``), and agencies' subscriptions whose deliveries are signed
webhooks retried from PostgreSQL through the notification queue (``subscriptions``,
``delivery``). docs/interop.md is the integrator's guide."""
