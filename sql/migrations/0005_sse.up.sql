-- Live events: positions of published events in their streams, and the
-- orders printers have acknowledged.

-- SSE resumes older than a stream's trim read the event log by stream
-- position; entry ids ("ms-seq") are compared as numbers.
CREATE INDEX events_stream_pos_idx ON events (
    stream,
    (split_part(stream_id, '-', 1)::numeric),
    (split_part(stream_id, '-', 2)::numeric)
) WHERE stream_id IS NOT NULL;

-- A printer (an API key with role printer) acknowledges each order it has
-- printed; an order with no acknowledgement is unprinted.
CREATE TABLE printer_acks (
    order_id        uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    printer_key_id  uuid NOT NULL REFERENCES api_keys (id),
    seller_id       uuid NOT NULL REFERENCES sellers (id),
    acked_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, printer_key_id)
);
CREATE INDEX printer_acks_seller_idx ON printer_acks (seller_id, acked_at);
