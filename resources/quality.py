"""Thresholds of the output QA gates (videogen.qa) that every clip and film passes before upload."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from videogen.config import load_settings, setting_default
from videogen.qa import QaLimits


class QualityResource(dg.ConfigurableResource):
    """The defaults are :class:`videogen.config.Settings`'; :func:`quality_from_env` passes the loaded values."""

    black_max_s: float = Field(default=setting_default("qa_black_max_s"),
                               description="Longest run of black frames an output may hold, seconds.")
    frozen_max_s: float = Field(default=setting_default("qa_frozen_max_s"),
                                description="Longest run of identical frames an output may hold, seconds.")
    loudness_lufs: float = Field(default=setting_default("qa_loudness_lufs"),
                                 description="Integrated loudness (EBU R128) a film's audio is mixed to, LUFS.")
    loudness_tolerance_lu: float = Field(default=setting_default("qa_loudness_tolerance_lu"),
                                         description="Allowed distance from that loudness, LU.")
    regenerate: bool = Field(default=setting_default("qa_regenerate"),
                             description="An output with a black or frozen run is generated once more with a new "
                             "seed before the job fails.")

    def limits(self) -> QaLimits:
        return QaLimits(black_max_s=self.black_max_s, frozen_max_s=self.frozen_max_s,
                        loudness_lufs=self.loudness_lufs, loudness_tolerance_lu=self.loudness_tolerance_lu)


def quality_from_env() -> QualityResource:
    settings = load_settings()
    return QualityResource(black_max_s=settings.qa_black_max_s, frozen_max_s=settings.qa_frozen_max_s,
                           loudness_lufs=settings.qa_loudness_lufs,
                           loudness_tolerance_lu=settings.qa_loudness_tolerance_lu,
                           regenerate=settings.qa_regenerate)
