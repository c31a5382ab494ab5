"""The throttling chapter's examples on real django-modern-rest controllers,
their throttles ported to luathrottle by import alone (see docs/porting/dmr.md)."""
