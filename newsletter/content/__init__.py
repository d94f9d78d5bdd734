"""Series files (schedules/) -> validated series."""
