"""Deployments: one device, one release, one config instance per schema; the lifecycle."""
