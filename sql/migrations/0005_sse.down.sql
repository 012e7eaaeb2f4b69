DROP TABLE IF EXISTS printer_acks;
DROP INDEX IF EXISTS events_stream_pos_idx;
