"""The test suite (tests/conftest.py has the fixtures)."""

import os

# An answer carrying a key its response model does not name fails the test (app/api/answers.py).
# Set here, before any test module or conftest imports the app; inherited by the processes the
# e2e tests start.
os.environ.setdefault("ANSIM_ANSWERS_EXTRA", "forbid")
