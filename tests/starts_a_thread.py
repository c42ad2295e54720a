"""A module that starts a thread when imported (tests/test_run_launcher.py: a fork server must not
fork after preloading it)."""

import threading

threading.Thread(target=threading.Event().wait, name="started-on-import", daemon=True).start()
