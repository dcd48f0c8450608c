"""Locust users for a realistic mix: phones, consoles, volunteers, store panic buttons."""
