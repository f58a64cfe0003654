"""flowatlas: an open platform for internet flow telemetry."""

__version__ = "0.1.0"
