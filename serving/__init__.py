"""The Ray Serve application that keeps models warm (see serving/app.py and serving/local.py)."""
