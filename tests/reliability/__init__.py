"""Reliability and security tests (issue 6): `make test-reliability`, excluded from `make test`.

A package, so that its conftest does not shadow tests/conftest.py for the other test modules.
"""
