"""The one spelling of instants as text (`controller.utc`)."""

from __future__ import annotations

from datetime import UTC, datetime

from controller.utc import iso_utc, utc_text


def test_epoch_seconds_are_written_in_utc_to_the_second_with_z() -> None:
    assert utc_text(1_800_000_000.75) == "2027-01-15T08:00:00Z"
    assert utc_text(0) == "1970-01-01T00:00:00Z"


def test_aware_datetimes_keep_their_fraction_and_end_in_z() -> None:
    assert iso_utc(datetime(2027, 1, 15, 8, 0, tzinfo=UTC)) == "2027-01-15T08:00:00Z"
    at = datetime(2027, 1, 15, 8, 0, 0, 250000, tzinfo=UTC)
    assert iso_utc(at) == "2027-01-15T08:00:00.250000Z"
