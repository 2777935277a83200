"""Incidents: alerts grouped by the entities they share, over time."""
