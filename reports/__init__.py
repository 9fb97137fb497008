"""Rendering of leaderboards and figures; rendered outputs land in reports/<suite>/."""
