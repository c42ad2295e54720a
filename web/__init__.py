"""The web app for people: pages served by the API service, each a client of the HTTP API."""
