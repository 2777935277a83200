"""Analyst features: query the lake from any tool, hunt with saved queries, report."""
