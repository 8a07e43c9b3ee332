"""The pure checks and file formats: what an upload, a settings document or a file on disk
may hold, and how it is read and written.

Shared by the sections (which refuse bad input before anything changes), the job programs
(which run as root and check again) and the vendor tool. Nothing here imports Twisted, the
HTTP layer, the jobs or a section (tests/test_architecture.py).
"""
