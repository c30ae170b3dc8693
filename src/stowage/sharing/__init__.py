"""Sharing: links anyone holding a token may use, and shares of a node with another user.

``repository`` holds all SQL (the grant look-up every non-owner request makes is hand-written, on the
raw driver); ``services`` the use cases; ``schemas`` the API shapes. Access decisions are made by
``stowage.policy.authorize`` from the grants the file services load for each request.
"""
