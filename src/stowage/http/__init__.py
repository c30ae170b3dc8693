"""HTTP shared by every front end (REST, and later tus, S3, WebDAV): header syntax and semantics,
download planning, streaming multipart, and the ASGI responses that send file content.

It imports no service and no front end; only ``responses.py`` knows Litestar (its response base).
"""
