"""Protocol front ends other than REST (tus, S3, WebDAV), one package each: ``routes.py``,
``auth.py``, ``errors.py``. Like ``api/`` they translate a protocol into service calls and back."""
