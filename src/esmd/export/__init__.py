"""Export of security events to SIEMs: record formats, sinks, and the background exporter."""
