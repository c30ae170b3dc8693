"""The tus 1.0 resumable-upload front end, mounted at ``/api/v1/uploads/``: ``routes.py`` (handlers),
``headers.py`` (header syntax), ``auth.py`` (version check and bearer authentication), ``errors.py``
(domain errors as tus statuses) and ``openapi.py`` (how the routes appear in the document)."""
