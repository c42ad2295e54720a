"""Developer tooling: the project-local PostgreSQL used by the demo command and the tests."""
