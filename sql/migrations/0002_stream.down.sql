DROP INDEX IF EXISTS events_time_idx;
DROP INDEX IF EXISTS events_unpublished_subject_idx;
DROP TABLE IF EXISTS processed_events;
