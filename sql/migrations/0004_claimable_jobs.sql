-- Error reports of category not_configured: the tenant has not saved its credentials (or chosen
-- its database) yet. The list is bridge.vocabulary.Category.
ALTER TABLE error_reports DROP CONSTRAINT error_reports_category_check;
ALTER TABLE error_reports ADD CONSTRAINT error_reports_category_check CHECK (category IN (
    'auth', 'permission', 'validation', 'duplicate', 'not_found', 'rate_limit', 'transient',
    'mapping', 'not_configured'));

-- The jobs a worker may claim now, the one statement of that rule (query claim_jobs):
-- waiting and due, or running with an expired lease (its worker died). One record, one writer:
-- a waiting job is not ready while a job of its key runs, even one whose lease expired (that one
-- is taken again first, alone, and only when no older job of its key runs).
CREATE VIEW claimable_jobs AS
SELECT j.id, j.tenant_id, j.kind, j.run_at FROM jobs j
WHERE ((j.state = 'waiting' AND j.run_at <= now())
       OR (j.state = 'running' AND j.locked_until < now()))
  AND NOT EXISTS (
      SELECT 1 FROM jobs r
      WHERE r.tenant_id = j.tenant_id AND r.kind = j.kind AND r.key = j.key
        AND r.state = 'running' AND r.id <> j.id AND (j.state = 'waiting' OR r.id < j.id));
