"""``Zip Code API Task`` (file 149): the documentation's example task.

Input ``iStrZipCode`` (STRING, required); outputs ``State`` and ``Place`` (STRING). A known zip
answers both; an unknown zip answers an empty ``botOutput``. ``76131`` answers
California / San Jose exactly as the documentation's execute example does (the real zip is in
Texas; the emulator replays the documented response).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streamproc.core.values import BotValue, ValueType
from streamproc.emulator.tasks.base import (
    ApiTask,
    InputSpec,
    OutputSpec,
    string_out,
    text_input,
)

# zip -> (state, place); insertion order of State then Place matches the documented output.
ZIP_CODES: Mapping[str, tuple[str, str]] = {
    "76131": ("California", "San Jose"),
    "95134": ("California", "San Jose"),
    "94105": ("California", "San Francisco"),
    "10001": ("New York", "New York"),
    "60601": ("Illinois", "Chicago"),
    "73301": ("Texas", "Austin"),
    "98101": ("Washington", "Seattle"),
    "02108": ("Massachusetts", "Boston"),
    "33101": ("Florida", "Miami"),
}


class ZipCodeTask(ApiTask):
    file_id = 149
    path = "Automation Anywhere\\Bots\\Zip Code API Task"
    summary = "Looks up the state and place of a US zip code; unknown zips answer no outputs."
    inputs = (InputSpec("iStrZipCode", ValueType.STRING, True, "five-digit US zip code"),)
    outputs = (
        OutputSpec("State", ValueType.STRING, "state name, e.g. California"),
        OutputSpec("Place", ValueType.STRING, "place name, e.g. San Jose"),
    )

    def run(self, inputs: Mapping[str, BotValue]) -> dict[str, Any]:
        found = ZIP_CODES.get((text_input(inputs, "iStrZipCode") or "").strip())
        if found is None:
            return {}
        state, place = found
        return {"State": string_out(state), "Place": string_out(place)}
