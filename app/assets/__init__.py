"""CCTV sites and emergency bells: importers for the public files, and what is around an
incident (issue 22 §1; docs/control-room.md)."""
