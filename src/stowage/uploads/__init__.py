"""Resumable uploads (the domain behind the tus front end): sessions that receive a file's bytes over
several requests, possibly on several workers, and put the finished file into the tree through the
files domain's write path (``UploadService.record_blob``).

``schemas.py`` (what a session is), ``repository.py`` (all SQL, including the PATCH lease), and
``services/`` (create, status, append, terminate, concatenate, expiry). No web framework here: the
tus front end (``protocols/tus``) parses headers and maps the domain errors to tus statuses.
"""
