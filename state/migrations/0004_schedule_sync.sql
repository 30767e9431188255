-- What the last schedule sync (every secret's row and due time recomputed
-- from the policies) was computed from: the policies file's content hash
-- and the rotator build, as one key. A tick whose key matches skips the
-- sync; any change of the file (or of the binary) makes the next tick
-- resync. gen counts syncs, so a process that synced from an older read
-- cannot record its key over a newer sync (compare and set).
CREATE TABLE rotator_schedule_sync (
    id        boolean PRIMARY KEY DEFAULT true CHECK (id),
    sync_key  text NOT NULL,
    gen       bigint NOT NULL,
    synced_at timestamptz NOT NULL DEFAULT now()
);
