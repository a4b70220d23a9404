-- The housekeeping of every process erases the details of audit rows past the retention window
-- every 10 s (erase_old_audit_values). With no index for it, it read the whole audit log each
-- time: 55 ms for a million rows, most of them erased long ago, and growing with every write the
-- bridge ever made. The rows that still keep a detail (conflicts) are few: an index of them alone.
-- Its build reads the audit log once, holding writes to it meanwhile.
CREATE INDEX audit_log_details_kept ON audit_log (at) WHERE detail IS NOT NULL;
