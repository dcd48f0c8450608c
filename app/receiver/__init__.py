"""The SIA DC-09 alarm receiver: alarm panels report into Ansim (docs/alarm-panels.md)."""
