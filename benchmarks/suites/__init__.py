"""Benchmark suites: scripts that wire datasets, agents and the A/B platform and write results/ files."""
