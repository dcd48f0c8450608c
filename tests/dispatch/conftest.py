from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
async def clean_receipts(clean, pool):
    await pool.execute("TRUNCATE dispatch_receipt")
