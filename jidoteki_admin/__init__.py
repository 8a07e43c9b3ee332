"""The appliance Admin API (Jidoteki Admin API v1) as a Twisted daemon."""

__version__ = "1.0.0"
API_PREFIX = "/api/v1/admin"
