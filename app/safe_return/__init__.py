"""Safe return: "walk me home" sessions whose checks run on the server (docs/safe-return.md)."""
