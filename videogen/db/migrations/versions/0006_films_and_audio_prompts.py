"""jobs.storyboard, jobs.audio_prompt_key, jobs.transcript: films and audio prompts

Revision ID: 0006
Revises: 0005

Written out in full (not derived from the code's metadata) so that later schema changes never
rewrite history.

A row with a ``storyboard`` (JSON: scenes, voice, music, subtitles) is a film, made by the
``generate_film`` job; a row with an ``audio_prompt_key`` (an object in the bucket) is a spoken
prompt, transcribed offline into ``transcript`` before it is generated. Both are optional: a row
with only ``user_id`` and ``prompt`` is still a clip.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("storyboard", postgresql.JSONB))
    op.add_column("jobs", sa.Column("audio_prompt_key", sa.Text))
    op.add_column("jobs", sa.Column("transcript", sa.Text))


def downgrade() -> None:
    op.drop_column("jobs", "transcript")
    op.drop_column("jobs", "audio_prompt_key")
    op.drop_column("jobs", "storyboard")
