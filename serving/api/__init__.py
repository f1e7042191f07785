"""The case-management API: a BentoML 1.4 service that scores households and reads batch runs (API.md)."""
