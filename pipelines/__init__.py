"""Dagster jobs of the generation domain: generate_video (one run per request), submit_prompt, retention."""
