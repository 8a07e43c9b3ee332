"""The HTTP layer: the site that takes requests off the wire, the gate over the endpoint
catalogue with the one error layer, authentication, uploads, the answers and the pages.

Sections use it (the catalogue to declare what they serve, the responses to answer); it
never knows a section (tests/test_architecture.py).
"""
