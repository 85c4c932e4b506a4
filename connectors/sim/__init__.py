"""Simulated plants with citable physics, and the OPC-UA server that serves them.

The twin never imports this package: it learns from data alone. The plants by name are in
:mod:`connectors.sim.plants`; nothing is imported here, so that ``twin --help`` (which loads
this package's command modules, :mod:`connectors.sim.cli` and :mod:`connectors.sim.demo`) does
not pull in torch and the plants' physics.
"""
