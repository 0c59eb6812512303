"""Tracking: signed links, provider webhooks, stats."""
