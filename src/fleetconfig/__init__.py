"""fleetconfig: configuration management for robot fleets."""

__version__ = "0.1.0"
