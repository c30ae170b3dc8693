"""The REST front end: controllers, their dependencies, authentication from headers, problem+json."""
